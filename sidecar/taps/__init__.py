"""Media taps: each turns a telephony platform's audio into per-channel PCM for ``LiveCall``.

Every tap module exposes ``router`` (FastAPI, under ``/v1/taps``); ``routes.py`` lists them.
"""
