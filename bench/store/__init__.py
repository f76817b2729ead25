"""The results store: SQLite with runs, cells and per-image scores; which cells a table covers."""
