//! The control socket's commands: one table, read by the plugin's tests
//! (`control.rs` checks that it names every request it takes) and by
//! `cvmem-ctl`, whose usage text it is (`plugin/ctl/main.rs` includes this
//! file). No dependencies, so that both crates can build it.

/// Every command of the control socket with its fields as `cvmem-ctl`
/// takes them (`?`: optional), in the order the usage text lists them.
pub const COMMANDS: &[(&str, &str)] = &[
    ("list-memslots", ""),
    ("create-memslot", "slot= gpa= size= [flags=] [backing=]"),
    ("delete-memslot", "slot="),
    ("move-memslot", "slot= gpa="),
    ("set-memslot-flags", "slot= flags="),
    (
        "set-attributes",
        "gpa= size= attributes= (8 = private) [flags=]",
    ),
    (
        "zap",
        "gpa= size= [roots=all|shared|private] [flush=on|off]",
    ),
    ("zap-all", "[flush=on|off]"),
    ("flush", "kind=current|all [vcpu=]"),
    ("set-zap-quirk", "enabled=on|off"),
    ("stats", ""),
    ("write", "gpa= value="),
    ("trace", "on=on|off"),
];

/// The commands for a usage text: "NAME FIELDS", one a line, indented.
pub fn usage() -> String {
    COMMANDS
        .iter()
        .map(|(name, fields)| {
            if fields.is_empty() {
                format!("  {name}\n")
            } else {
                format!("  {name} {fields}\n")
            }
        })
        .collect()
}
