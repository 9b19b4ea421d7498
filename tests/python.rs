//! Integration tests of python objects: built from source with scripts/build-guest, driven over real HTTP.

mod support;
