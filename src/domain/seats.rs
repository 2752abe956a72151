//! Seat count and the live compact guild index.
//! Not yet: built by the seat engine issue.
