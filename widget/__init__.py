"""Browser UIs (agent widget, supervisor console, knowledge manager), served by the service."""
