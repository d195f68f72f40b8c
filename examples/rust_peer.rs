//! A Rust program as a uhura peer, without Node: a server and a client talk
//! over 127.0.0.1, or the client joins any uhura server (Node, old or new)
//! given as an argument.
//!
//!     cargo run --no-default-features --example rust_peer            # both ends here
//!     cargo run --no-default-features --example rust_peer -- 5555    # join a server on port 5555

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use uhura::{Client, Event, Options, Server, ServerOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (addr, server) = match std::env::args().nth(1) {
        Some(port) => (format!("127.0.0.1:{}", port.parse::<u16>()?), None),
        None => {
            let server = Arc::new(Server::bind("127.0.0.1:0", ServerOptions::default()).await?);
            println!("[server] listening on {}", server.local_addr());
            tokio::spawn(serve(server.clone()));
            (server.local_addr().to_string(), Some(server))
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);

    let client = Client::new(addr.as_str(), Options::default())?;
    // Queued until the handshake completes, then sent in order.
    client.set("name", "rust")?;
    let hello = client.send("hello", ("from Rust ☃", [1, 2, 3]));

    loop {
        let event = tokio::time::timeout_at(deadline, client.next_event()).await?.ok_or("the client stopped")?;
        match event {
            Event::Connect { resumed } => {
                let sid = client.session_id().unwrap_or_default();
                println!("[client] connected: session {sid} (resumed: {resumed})");
                if server.is_none() {
                    break; // Another server: it need not answer.
                }
            }
            Event::Message { name, args } => {
                println!("[client] got {name} {}", json!(args));
                break;
            }
            Event::Error { message, .. } => return Err(message.into()),
            other => println!("[client] {other:?}"),
        }
    }
    tokio::time::timeout_at(deadline, hello).await??;
    println!("[client] the server acknowledged 'hello'");

    client.disconnect().await;
    println!("[client] disconnected");
    if let Some(server) = server {
        tokio::time::timeout_at(deadline, server.close()).await?;
        println!("[server] closed");
    }
    Ok(())
}

/// Our own server: answers every `hello` with a `welcome`.
async fn serve(server: Arc<Server>) {
    while let Some(conn) = server.accept().await {
        println!("[server] connection from {:?}, session {}", conn.peer_addr(), conn.session_id().unwrap_or("?"));
        tokio::spawn(async move {
            while let Some(event) = conn.next_event().await {
                match event {
                    Event::Message { name, args } if name == "hello" => {
                        println!("[server] got hello {} from {}", json!(args), conn.get("name").unwrap_or_default());
                        // Fire and forget: the client acks it all the same.
                        let _ = conn.emit("welcome", (json!({ "to": conn.get("name") }),));
                    }
                    Event::Disconnect { .. } => println!("[server] disconnected"),
                    _ => {}
                }
            }
        });
    }
}
