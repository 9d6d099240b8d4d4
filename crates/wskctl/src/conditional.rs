//! `wskctl policy` and `wskctl decide`: the condition function's rules, and user mode's side of
//! deferred decisions (the kernel's WSAAccept CF_DEFER).

use std::fmt::Write as _;
use std::io::{BufRead, Write as _};
use std::net::{IpAddr, SocketAddr};

use ioctl::{Action, MAX_RULES, PendingRecord, PolicyMessage, WireRule};
use ipnet::IpNet;
use serde_json::json;

use crate::client::{CallError, Client};

/// `--allow` / `--deny` in the order given on the command line (first match wins, so order
/// The `--allow` and `--deny` rules in the order they were given: each value with the position
/// clap parsed it at (`ArgMatches::indices_of`), merged.
pub fn ordered_rules(
    allow: impl IntoIterator<Item = (usize, String)>,
    deny: impl IntoIterator<Item = (usize, String)>,
) -> Vec<(bool, String)> {
    let mut rules: Vec<(usize, bool, String)> = allow
        .into_iter()
        .map(|(at, prefix)| (at, true, prefix))
        .chain(deny.into_iter().map(|(at, prefix)| (at, false, prefix)))
        .collect();
    rules.sort_by_key(|(at, _, _)| *at);
    rules
        .into_iter()
        .map(|(_, allow, prefix)| (allow, prefix))
        .collect()
}

/// A rule from `PREFIX/LEN`, parsed by `ipnet` (a bare address means the whole address). A prefix
/// with host bits set (`10.1.2.3/8`) is refused: it does not say which network was meant.
///
/// # Errors
/// A sentence saying what is wrong.
pub fn wire_rule(allow: bool, text: &str) -> Result<WireRule, String> {
    let net: IpNet = if text.contains('/') {
        text.parse()
            .map_err(|_| format!("'{text}' is not an IPv4 or IPv6 prefix (ADDRESS/LENGTH)"))?
    } else {
        text.parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("'{text}' is not an IPv4 or IPv6 address or prefix"))?
    };
    if net.trunc() != net {
        return Err(format!(
            "'{text}' has host bits set: the network is {}",
            net.trunc()
        ));
    }
    Ok(WireRule {
        action: if allow {
            Action::Accept
        } else {
            Action::Reject
        },
        length: u32::from(net.prefix_len()),
        address: SocketAddr::new(net.network(), 0).into(),
    })
}

/// The policy message for `policy set`.
///
/// # Errors
/// A sentence when a rule is malformed or there are too many.
pub fn policy_message(
    listener: u32,
    rules: &[(bool, String)],
    default: Action,
    per_source: u32,
) -> Result<PolicyMessage, String> {
    if rules.len() > MAX_RULES {
        return Err(format!("at most {MAX_RULES} rules"));
    }
    let mut message = PolicyMessage {
        listener,
        default_action: default,
        per_source,
        ..PolicyMessage::default()
    };
    for (slot, (allow, text)) in message.rules.iter_mut().zip(rules) {
        *slot = wire_rule(*allow, text)?;
    }
    message.rule_count = u32::try_from(rules.len()).unwrap_or(u32::MAX);
    Ok(message)
}

fn address(a: &ioctl::WireAddress) -> String {
    a.to_socket_addr()
        .map_or_else(|_| "?".to_owned(), |s| s.to_string())
}

/// `policy show` output.
#[must_use]
pub fn render_policy(p: &PolicyMessage, as_json: bool) -> String {
    let rules: Vec<(String, String)> = p.rules[..p.rule_count as usize]
        .iter()
        .map(|r| {
            let ip = r
                .address
                .to_socket_addr()
                .map_or_else(|_| "?".to_owned(), |s| s.ip().to_string());
            (
                (if r.action == Action::Accept {
                    "allow"
                } else {
                    "deny"
                })
                .to_owned(),
                format!("{ip}/{}", r.length),
            )
        })
        .collect();
    if as_json {
        let list: Vec<_> = rules
            .iter()
            .map(|(a, p)| json!({"action": a, "prefix": p}))
            .collect();
        return json!({"listener": p.listener, "default": Action::name(p.default_action), "per_source": p.per_source, "rules": list}).to_string();
    }
    let mut out = format!(
        "listener {}: default {}, per-source limit {}\n",
        p.listener,
        Action::name(p.default_action),
        if p.per_source == 0 {
            "none".to_owned()
        } else {
            p.per_source.to_string()
        }
    );
    for (i, (a, prefix)) in rules.iter().enumerate() {
        let _ = writeln!(out, "  {:>2}. {a:<5} {prefix}", i + 1);
    }
    out
}

/// How `decide` answers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Ask on the terminal.
    Interactive,
    /// Accept everything.
    AcceptAll,
    /// Reject everything.
    RejectAll,
    /// One JSON line out, one `accept`/`reject` line in, per request.
    Script,
}

fn pending_line(p: &PendingRecord) -> String {
    json!({"id": p.id, "listener": p.listener, "remote": address(&p.remote), "local": address(&p.local), "waited_ms": p.waited_ms}).to_string()
}

/// The decide loop: until `count` decisions were made (if given), or stdin ends.
///
/// # Errors
/// A failed IOCTL.
pub fn decide_loop(
    client: &Client,
    listener: Option<u32>,
    answer: Answer,
    count: Option<u64>,
) -> Result<(), CallError> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout();
    let mut made = 0u64;
    // On a terminal, say what it waits for (once per wait, on stderr: stdout stays the answers).
    let tell = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut told = false;
    while count.is_none_or(|c| made < c) {
        if tell && !told {
            eprintln!("waiting for a deferred connection (Ctrl-C to stop)...");
            told = true;
        }
        let Some(pending) = client.get_pending(listener, 1_000)? else {
            continue;
        };
        told = false;
        let accept = match answer {
            Answer::AcceptAll => true,
            Answer::RejectAll => false,
            Answer::Script | Answer::Interactive => {
                if answer == Answer::Script {
                    let _ = writeln!(out, "{}", pending_line(&pending));
                } else {
                    let _ = write!(
                        out,
                        "connection {} from {} to {} (waited {} ms) on listener {}: accept? [a/r] ",
                        pending.id,
                        address(&pending.remote),
                        address(&pending.local),
                        pending.waited_ms,
                        pending.listener
                    );
                }
                let _ = out.flush();
                let mut line = String::new();
                if input.read_line(&mut line).unwrap_or(0) == 0 {
                    // No more answers: the request times out in the driver (rejected).
                    return Ok(());
                }
                matches!(line.trim(), "accept" | "a" | "y" | "yes")
            }
        };
        match client.decide(pending.id, accept) {
            // Withdrawn by the peer or timed out meanwhile: nothing to decide.
            Ok(()) | Err(CallError::Status(wsk::NtStatus::NOT_FOUND)) => {}
            Err(error) => return Err(error),
        }
        made += 1;
        if answer == Answer::Interactive {
            let _ = writeln!(out, "{}", if accept { "accepted" } else { "rejected" });
        }
    }
    Ok(())
}
