//! A minimal RTMP publishing client on rml_rtmp's `ClientSession`: handshake, `connect`,
//! `createStream`, `publish`, then audio/video/metadata messages. Used by the integration tests
//! (reconnects, stalls, malformed tags) and by the `rtmp_load` generator, never by the server.

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
    PublishRequestType, StreamMetadata,
};
use rml_rtmp::time::RtmpTimestamp;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake: {0}")]
    Handshake(#[from] rml_rtmp::handshake::HandshakeError),
    #[error("client session: {0}")]
    Session(#[from] rml_rtmp::sessions::ClientSessionError),
    /// The server answered with an error status (`NetStream.Publish.BadName` …).
    #[error("refused: {code}")]
    Refused { code: String },
    #[error("server closed the connection")]
    Closed,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// A connection that is publishing.
pub struct PublishClient {
    stream: TcpStream,
    session: ClientSession,
    buf: Vec<u8>,
}

impl PublishClient {
    /// Connects to `addr`, app `app`, and publishes `stream_key` (live). Fails with
    /// [`ClientError::Refused`] when the server refuses.
    pub async fn publish(
        addr: SocketAddr,
        app: &str,
        stream_key: &str,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        tokio::time::timeout(timeout, Self::publish_inner(addr, app, stream_key))
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }

    async fn publish_inner(
        addr: SocketAddr,
        app: &str,
        stream_key: &str,
    ) -> Result<Self, ClientError> {
        let mut stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        let mut handshake = Handshake::new(PeerType::Client);
        stream
            .write_all(&handshake.generate_outbound_p0_and_p1()?)
            .await?;
        let mut buf = vec![0u8; 16 * 1024];
        let remaining = loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            match handshake.process_bytes(&buf[..n])? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    stream.write_all(&response_bytes).await?;
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    stream.write_all(&response_bytes).await?;
                    break remaining_bytes;
                }
            }
        };
        let mut config = ClientSessionConfig::new();
        config.tc_url = Some(format!("rtmp://{addr}/{app}"));
        let (session, results) = ClientSession::new(config)?;
        let mut client = Self {
            stream,
            session,
            buf,
        };
        client.send_results(results).await?;
        let results = client.session.handle_input(&remaining)?;
        client.send_results(results).await?;
        let r = client.session.request_connection(app.to_string())?;
        client.send_results(vec![r]).await?;
        client
            .wait_for(|e| matches!(e, ClientSessionEvent::ConnectionRequestAccepted))
            .await?;
        let r = client
            .session
            .request_publishing(stream_key.to_string(), PublishRequestType::Live)?;
        client.send_results(vec![r]).await?;
        client
            .wait_for(|e| matches!(e, ClientSessionEvent::PublishRequestAccepted))
            .await?;
        Ok(client)
    }

    async fn send_results(&mut self, results: Vec<ClientSessionResult>) -> Result<(), ClientError> {
        for r in results {
            if let ClientSessionResult::OutboundResponse(p) = r {
                self.stream.write_all(&p.bytes).await?;
            }
        }
        Ok(())
    }

    /// Reads until an event matches; error statuses become [`ClientError::Refused`].
    async fn wait_for(
        &mut self,
        want: impl Fn(&ClientSessionEvent) -> bool,
    ) -> Result<(), ClientError> {
        loop {
            let n = self.stream.read(&mut self.buf).await?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            let input = self.buf[..n].to_vec();
            let results = self.session.handle_input(&input)?;
            let mut found = false;
            for r in results {
                match r {
                    ClientSessionResult::OutboundResponse(p) => {
                        self.stream.write_all(&p.bytes).await?
                    }
                    ClientSessionResult::RaisedEvent(e) => {
                        if want(&e) {
                            found = true;
                        }
                        match e {
                            ClientSessionEvent::ConnectionRequestRejected { description } => {
                                return Err(ClientError::Refused { code: description })
                            }
                            ClientSessionEvent::UnhandleableOnStatusCode { code } => {
                                return Err(ClientError::Refused { code })
                            }
                            _ => {}
                        }
                    }
                    ClientSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
            if found {
                return Ok(());
            }
        }
    }

    /// Sends `@setDataFrame onMetaData`.
    pub async fn send_metadata(&mut self, metadata: &StreamMetadata) -> Result<(), ClientError> {
        let r = self.session.publish_metadata(metadata)?;
        self.send_results(vec![r]).await
    }

    /// Sends one video message (an FLV VIDEODATA body).
    pub async fn send_video(&mut self, timestamp_ms: u32, body: Bytes) -> Result<(), ClientError> {
        let r = self
            .session
            .publish_video_data(body, RtmpTimestamp::new(timestamp_ms), false)?;
        self.send_results(vec![r]).await
    }

    /// Sends one audio message (an FLV AUDIODATA body).
    pub async fn send_audio(&mut self, timestamp_ms: u32, body: Bytes) -> Result<(), ClientError> {
        let r = self
            .session
            .publish_audio_data(body, RtmpTimestamp::new(timestamp_ms), false)?;
        self.send_results(vec![r]).await
    }

    /// Sends `deleteStream` (the end of a publish, as ffmpeg does it).
    pub async fn stop(&mut self) -> Result<(), ClientError> {
        let results = self.session.stop_publishing()?;
        self.send_results(results).await
    }

    /// Reads and answers whatever the server sent (acknowledgements, pings) without blocking
    /// for long; returns `Err(Closed)` once the server has closed the connection.
    pub async fn poll_server(&mut self, wait: Duration) -> Result<(), ClientError> {
        match tokio::time::timeout(wait, self.stream.read(&mut self.buf)).await {
            Err(_) => Ok(()),
            Ok(Ok(0)) => Err(ClientError::Closed),
            Ok(Ok(n)) => {
                let input = self.buf[..n].to_vec();
                let results = self.session.handle_input(&input)?;
                self.send_results(results).await
            }
            Ok(Err(e)) => Err(e.into()),
        }
    }

    /// The socket, to write raw bytes or close it abruptly (the way OBS ends a publish).
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}
