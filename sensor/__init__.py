"""sensor: passive API traffic sensor."""
__version__ = "0.1.0"
