//! Discord's permission algorithm for the VIEW_CHANNEL decision (DESIGN.md "Seat semantics").
//! Not yet: built by the seat engine issue.
