//! Helpers shared by the integration tests: the aiosmtpd sink, an INN news
//! server and a network of real `mimix` node processes. Each test binary
//! uses a part of them.

#![allow(dead_code)]

pub mod hop;
pub mod net;
pub mod nntp;
pub mod packets;
pub mod proc;
pub mod smtp;
pub mod solo;
