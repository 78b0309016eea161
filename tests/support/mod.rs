//! Helpers shared by the integration tests: the aiosmtpd sink and a network
//! of real `mimix` node processes. Each test binary uses a part of them.

#![allow(dead_code)]

pub mod net;
pub mod packets;
pub mod smtp;
