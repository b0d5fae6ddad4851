"""Process wiring: settings read once, the services a process holds, the database, the clock."""
