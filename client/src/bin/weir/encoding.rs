//! `--encoding json|binary`: the option of the commands that produce, read
//! or pull messages (`weir produce`, `read`, `consume` and the `bench`
//! workloads), mapped onto the client's [`Encoding`]. What is printed does
//! not depend on it: only the bytes on the wire do.

use weir_client::{Client, Encoding};

/// The wire encoding of messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EncodingArg {
    /// JSON bodies (binary values as base64).
    #[default]
    Json,
    /// The binary batch encoding, `application/vnd.weir.batch` (raw
    /// values, no base64).
    Binary,
}

impl From<EncodingArg> for Encoding {
    fn from(arg: EncodingArg) -> Encoding {
        match arg {
            EncodingArg::Json => Encoding::Json,
            EncodingArg::Binary => Encoding::Binary,
        }
    }
}

impl EncodingArg {
    /// `client`, sending and asking for messages in this encoding.
    pub fn client(self, client: &Client) -> Client {
        client.clone().with_encoding(self.into())
    }
}
