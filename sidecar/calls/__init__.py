"""Live calls on the media side: a tap's call (``live_call``), the registry of the calls running in
this process (``registry``) and their errors (``errors``).

Nothing here imports the web service.
"""
