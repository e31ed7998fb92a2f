//! `berth user <name>`: hashes a password for the `[users]` table of an auth policy.
//!
//! The password is read without echo from the terminal (asked twice), or as one line from
//! standard input when that is not a terminal (`echo "$PASSWORD" | berth user ci`). The output
//! is the TOML line to paste: `name = "<hash>"`.

use std::io::{BufRead, IsTerminal};

use berth_auth::password;

/// Arguments of `berth user`.
#[derive(clap::Args)]
pub struct UserArgs {
    /// The user name.
    name: String,
    /// Write a bcrypt hash (as `htpasswd -B` does) instead of argon2id.
    #[arg(long)]
    bcrypt: bool,
}

/// Prints the policy line for a user.
pub fn run(args: &UserArgs) -> Result<(), String> {
    if args.name.is_empty() || args.name.contains(':') || args.name.chars().any(char::is_whitespace) {
        return Err(format!("user name {:?} must be non-empty, without ':' or spaces", args.name));
    }
    let secret = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("password for {}: ", args.name)).map_err(|e| e.to_string())?;
        let again = rpassword::prompt_password("again: ").map_err(|e| e.to_string())?;
        if first != again {
            return Err("the passwords differ".into());
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| e.to_string())?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if secret.is_empty() {
        return Err("empty password".into());
    }
    let hash = password::hash(&secret, args.bcrypt)?;
    println!("{} = \"{hash}\"", args.name);
    Ok(())
}
