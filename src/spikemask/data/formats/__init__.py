"""Readers (and writers, for tests) of the event-camera and image file formats the papers' data sets use.

Every reader is vectorised with numpy and returns events as a structured ``EVENT_DTYPE`` array
``(t, x, y, p)``; a file that cannot be read raises :class:`~spikemask.data.events.EventFileError`
naming the file and what is wrong.
"""
