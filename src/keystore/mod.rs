//! Our own keys: the secret key files, their rotation, and the
//! `remailer-conf.txt` we publish.

pub mod files;
