"""The built-in corpus: real tunes from the music21 package rendered to audio, described in words, and listened to by
simulated users."""
