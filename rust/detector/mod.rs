//! The Detector: the attempt table and the policies that decide which attempts to copy.
