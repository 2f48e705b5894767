"""Case intake: the signed webhook where a Salesforce case or safety alert opens an incident."""
