"""History: the change archive, point-in-time restore, backups, replay and export."""
