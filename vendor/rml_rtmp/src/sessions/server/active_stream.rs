use super::PublishMode;

pub enum StreamState {
    Created,

    // storef: `mode` is kept from upstream but never read.
    #[allow(dead_code)]
    Publishing {
        stream_key: String,
        mode: PublishMode,
    },

    Playing {
        stream_key: String,
    },

    Completed,
}

pub struct ActiveStream {
    pub current_state: StreamState,
}
