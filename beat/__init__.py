"""RedBeat scheduling: one entry per application, kept in step with the fleet file (issue 4)."""
