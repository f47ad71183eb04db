//! Integration tests of the Lever source against the in-process emulator.
