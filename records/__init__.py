"""The records database: tables, the audit chain, projections and archived histories."""
