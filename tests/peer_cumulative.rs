//! The protocol state machine, driven without I/O: cumulative acks between
//! two of our peers (extensions 2), and per-message acks for the others.

mod common;

use common::{config, events, ids_of, output, output_texts};
use std::fmt::Write as _;
use std::time::Instant;
use uhura::protocol::peer::{Config, Event, Peer, Role};

/// A server of ours with `defer_acks`, after a client's handshake offering
/// extensions `version`, and the events `ids` from it; returns the acks it
/// writes for them in one batch.
fn acks_for_batch(version: u64, ids: &[&str], duplicate_at: Option<usize>) -> Vec<String> {
    let now = Instant::now();
    let mut server = Peer::new(Role::Server, Config { defer_acks: true, ..config() }, now);
    server.handle_open(now);
    let start =
        format!("[\n[\"_set\",{{}}]\n,\n[\"start\",{{\"objectMode\":true,\"enableAcks\":true,\"uhura\":{version}}}]");
    server.handle_receive(start.as_bytes(), now);
    let _ = events(&mut server);
    server.handle_session_loaded(None, now);
    let _ = events(&mut server);
    let _ = output_texts(&mut server);
    let mut msgs = String::new();
    for (i, id) in ids.iter().enumerate() {
        let _ = write!(msgs, "\n,\n{{\"args\":[\"e\",{i}],\"id\":\"{id}\"}}");
        if duplicate_at == Some(i) {
            let _ = write!(msgs, "\n,\n{{\"args\":[\"e\",{i}],\"id\":\"{id}\"}}");
        }
    }
    server.handle_receive(msgs.as_bytes(), now);
    let due: Vec<(String, bool)> = events(&mut server)
        .into_iter()
        .filter_map(|e| if let Event::AckDue { id, duplicate } = e { Some((id, duplicate)) } else { None })
        .collect();
    server.write_acks(due.iter().map(|(id, dup)| (id.as_str(), *dup)));
    output_texts(&mut server)
}

#[test]
fn a_batch_of_acks_is_one_cumulative_ack_only_for_peers_that_negotiated_it() {
    let ids = ["0123456789ab-1", "0123456789ab-2", "0123456789ab-3", "0123456789ab-4"];
    assert_eq!(acks_for_batch(2, &ids, None), vec![r#"["_uhura_ack","0123456789ab-4"]"#]);
    // Extensions 1 (our older releases) and old peers: one ack per message.
    let one_each: Vec<String> = ids.iter().map(|id| format!(r#"{{"args":["ack::{id}"]}}"#)).collect();
    assert_eq!(acks_for_batch(1, &ids, None), one_each);
    assert_eq!(acks_for_batch(0, &ids, None), one_each);
    // A single ack stays as it always was.
    assert_eq!(acks_for_batch(2, &ids[..1], None), one_each[..1]);
    // A duplicate's ack is never covered by a cumulative one: it splits the run.
    assert_eq!(
        acks_for_batch(2, &ids, Some(1)),
        vec![
            r#"["_uhura_ack","0123456789ab-2"]"#.to_owned(),
            r#"{"args":["ack::0123456789ab-2"]}"#.to_owned(),
            r#"["_uhura_ack","0123456789ab-4"]"#.to_owned(),
        ]
    );
}

/// A client of ours connected to a server whose `connect` offered
/// extensions `version`, with four events sent and unacknowledged.
fn client_with_four_unacked(version: u64) -> (Peer, Vec<String>) {
    let now = Instant::now();
    let mut client = Peer::new(Role::Client, config(), now);
    client.handle_open(now);
    let connect = format!(
        "[\n[\"_set\",\"sessionID\",\"aaaaaaaaaaaaaaaaaaaaaaaa\"]\n,\n{{\"args\":[\"connect\",{{\"objectMode\":true,\"enableAcks\":true,\"uhura\":{version}}}],\"id\":\"c\"}}"
    );
    client.handle_receive(connect.as_bytes(), now);
    let _ = events(&mut client);
    let _ = output_texts(&mut client);
    for i in 0..4 {
        client.send_event(&format!("[\"e\",{i}]"), Some((1, i)), now);
    }
    let ids = ids_of(&output(&mut client));
    (client, ids)
}

#[test]
fn a_cumulative_ack_settles_every_callback_up_to_its_id_in_order() {
    let now = Instant::now();
    let (mut client, ids) = client_with_four_unacked(2);
    client.handle_receive(format!("\n,\n[\"_uhura_ack\",\"{}\"]", ids[2]).as_bytes(), now);
    assert_eq!(events(&mut client), vec![Event::Acked((1, 0)), Event::Acked((1, 1)), Event::Acked((1, 2))]);
    assert_eq!(client.unacked_len(), 1);
    // Again, or for an id acknowledged already: nothing more.
    client.handle_receive(format!("\n,\n[\"_uhura_ack\",\"{}\"]", ids[1]).as_bytes(), now);
    assert_eq!(events(&mut client), vec![]);
    client.handle_receive(format!("\n,\n[\"_uhura_ack\",\"{}\"]", ids[3]).as_bytes(), now);
    assert_eq!(events(&mut client), vec![Event::Acked((1, 3))]);

    // An application's own `_uhura_ack` event (object-shaped, with an id) is
    // delivered, not taken for an ack.
    let (mut client, ids) = client_with_four_unacked(2);
    let app = format!("\n,\n{{\"args\":[\"_uhura_ack\",\"{}\"],\"id\":\"x\"}}", ids[3]);
    client.handle_receive(app.as_bytes(), now);
    assert_eq!(events(&mut client), vec![Event::Message(format!("[\"_uhura_ack\",\"{}\"]", ids[3]))]);
    assert_eq!(client.unacked_len(), 4);

    // A server that did not negotiate it: `_uhura_ack` is an ordinary event.
    let (mut client, ids) = client_with_four_unacked(1);
    client.handle_receive(format!("\n,\n[\"_uhura_ack\",\"{}\"]", ids[3]).as_bytes(), now);
    assert_eq!(events(&mut client), vec![Event::Message(format!("[\"_uhura_ack\",\"{}\"]", ids[3]))]);
    assert_eq!(client.unacked_len(), 4);
}
