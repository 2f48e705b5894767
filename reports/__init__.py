"""The team lead's reports: SLA attainment, its chart, and the daily report Schedule."""
