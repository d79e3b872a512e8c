"""tunespace: music representations that bridge what music is and what listeners do."""

__version__ = "0.1.0"
