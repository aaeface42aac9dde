//! cvmem-ctl: sends requests to a running cvmem's control socket
//! (`control=PATH`) and prints the replies.
//!
//! ```text
//! cvmem-ctl SOCKET COMMAND [KEY=VALUE ...]   one request, its reply on stdout
//! cvmem-ctl SOCKET -                         raw: JSON requests from stdin, a line each
//! ```
//!
//! `cvmem-ctl /tmp/cvmem.sock delete-memslot slot=3` sends
//! `{"cmd":"delete-memslot","slot":3}`. Values `on`/`off`/`true`/`false`
//! become booleans, decimal numbers numbers, anything else a string (the
//! plugin reads `0x1000` and `64M` as numbers). The exit status is 0 when
//! every reply says `"ok": true`, 1 when one does not, 2 when the socket
//! cannot be used.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use serde_json::{Map, Value};

// The plugin's table of commands (a cdylib cannot be linked, so the file
// is included).
#[path = "../src/commands.rs"]
mod commands;

/// The usage text, its command list from the plugin's table.
fn usage() -> String {
    format!(
        "usage: cvmem-ctl SOCKET COMMAND [KEY=VALUE ...]\n       \
         cvmem-ctl SOCKET -    (JSON requests from stdin, one a line)\n\
         commands:\n{}",
        commands::usage()
    )
}

/// The request for `COMMAND KEY=VALUE...`.
fn request(cmd: &str, args: &[String]) -> Result<Value, String> {
    let mut m = Map::new();
    m.insert("cmd".into(), Value::String(cmd.into()));
    for a in args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| format!("'{a}' is not KEY=VALUE"))?;
        let value = match v {
            "on" | "true" | "yes" => Value::Bool(true),
            "off" | "false" | "no" => Value::Bool(false),
            _ => match v.parse::<u64>() {
                Ok(n) => Value::from(n),
                Err(_) => Value::String(v.into()),
            },
        };
        m.insert(k.into(), value);
    }
    Ok(Value::Object(m))
}

/// Sends `line`, prints the reply; whether it said ok.
fn exchange(
    out: &mut UnixStream,
    input: &mut BufReader<UnixStream>,
    line: &str,
) -> Result<bool, String> {
    writeln!(out, "{line}").map_err(|e| format!("cannot send: {e}"))?;
    let mut reply = String::new();
    match input.read_line(&mut reply) {
        Ok(0) => return Err("the plugin closed the connection".into()),
        Ok(_) => {}
        Err(e) => return Err(format!("cannot read the reply: {e}")),
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(reply.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // The reader went away (`cvmem-ctl ... | head`): end quietly
            // with the status a shell gives a command SIGPIPE killed, as
            // the other tools of such a pipeline do. print! would panic.
            std::process::exit(128 + 13);
        }
        return Err(format!("cannot print the reply: {e}"));
    }
    let ok = serde_json::from_str::<Value>(&reply)
        .ok()
        .and_then(|v| v.get("ok").and_then(Value::as_bool))
        .unwrap_or(false);
    Ok(ok)
}

fn run(argv: &[String]) -> Result<bool, String> {
    let (socket, cmd, rest) = match argv {
        [socket, cmd, rest @ ..] => (socket, cmd, rest),
        _ => return Err(usage().trim_end().into()),
    };
    let stream = UnixStream::connect(socket).map_err(|e| format!("{socket}: {e}"))?;
    let mut out = stream.try_clone().map_err(|e| e.to_string())?;
    let mut input = BufReader::new(stream);
    if cmd == "-" {
        let mut all_ok = true;
        for line in std::io::stdin().lock().lines() {
            let line = line.map_err(|e| format!("stdin: {e}"))?;
            if line.trim().is_empty() {
                continue;
            }
            all_ok &= exchange(&mut out, &mut input, &line)?;
        }
        return Ok(all_ok);
    }
    let req = request(cmd, rest)?;
    exchange(&mut out, &mut input, &req.to_string())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().is_some_and(|a| a == "-h" || a == "--help") {
        print!("{}", usage());
        return ExitCode::SUCCESS;
    }
    match run(&argv) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("cvmem-ctl: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_become_json() {
        let args: Vec<String> = ["slot=3", "gpa=0x100000", "flush=off", "roots=shared"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let v = request("zap", &args).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"cmd": "zap", "slot": 3, "gpa": "0x100000", "flush": false, "roots": "shared"})
        );
        assert!(request("zap", &["x".to_string()]).is_err());
    }
}
