"""Arbitrary text after a key line gives patches or AbcError, never another exception."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tunespace.symbolic import AbcError, abc_patches, interleaved_abc


@settings(max_examples=300, deadline=None)
@given(body=st.text(alphabet='ABCabcz2/|:[]{}"!^_=,.%\\ \nKVTMw1', max_size=80))
def test_any_text_after_a_key_gives_patches_or_a_named_error(body):
    text = "X:1\nT:Title\nK:G\n" + body
    try:
        patches = abc_patches(text)
    except AbcError:
        return
    assert patches[0] == "K:G\n" and all(isinstance(patch, str) and patch for patch in patches)
    assert interleaved_abc(text) == "".join(patches)
