//! Exit: the last hop of a message: reassembly of chunks and delivery.

pub mod reassembly;
