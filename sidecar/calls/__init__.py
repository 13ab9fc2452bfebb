"""Live calls on the media side: a tap's call (``live_call``), the registry of the calls running in
this process (``registry``), their errors (``errors``), and what a tap may ask of them (``access``).

Nothing here imports the web service: the service composes these and hands them to the taps.
"""
