"""One module per database dialect; each holds all of that dialect's SQL and type mapping."""
