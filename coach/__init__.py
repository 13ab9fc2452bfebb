"""Coaching: detectors, rule packs, emotion and scorecards over a call's transcript window.

Pure functions over transcript events; nothing here reads audio. (Built by the coach issue.)
"""
