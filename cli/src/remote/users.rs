//! `allot admin users …`.

use anyhow::bail;
use clap::{Subcommand, ValueEnum};
use serde_json::Value;

use super::table::{Table, cell};
use super::{Client, print_json};

#[derive(Subcommand)]
pub enum UsersCommand {
    /// List accounts by id, optionally of one role.
    ///
    /// Example: allot admin users list --role admin
    List(ListArgs),
    /// Show one account (by id or email), with its status and live sessions.
    ///
    /// Example: allot admin users show min-ji.kim@example.com
    Show(UserArg),
    /// Make an account an admin.
    ///
    /// Example: allot admin users promote usr_7
    Promote(UserArg),
    /// Make an admin a customer again (not yourself).
    ///
    /// Example: allot admin users demote usr_7
    Demote(UserArg),
    /// Disable an account: it cannot log in, its tokens stop working and its sessions end.
    ///
    /// Example: allot admin users disable spammer@example.com
    Disable(UserArg),
    /// Enable a disabled account again.
    ///
    /// Example: allot admin users enable usr_7
    Enable(UserArg),
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Customer,
    Admin,
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Only accounts of this role.
    #[arg(long, value_enum)]
    role: Option<RoleArg>,
    /// At most this many, by id.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

#[derive(clap::Args)]
pub struct UserArg {
    /// The account's id (`usr_…`) or email address.
    user: String,
}

pub async fn run(client: &mut Client, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::List(args) => {
            let path = match args.role {
                Some(RoleArg::Customer) => "/admin/users?role=customer",
                Some(RoleArg::Admin) => "/admin/users?role=admin",
                None => "/admin/users",
            };
            let users = client.list_up_to(path, args.limit).await?;
            print_users(client, &users)
        }
        UsersCommand::Show(arg) => {
            let id = resolve(client, &arg.user).await?;
            let user = client.get(&format!("/admin/users/{id}")).await?;
            print_user(client, &user)
        }
        UsersCommand::Promote(arg) => change(client, &arg.user, "promote").await,
        UsersCommand::Demote(arg) => change(client, &arg.user, "demote").await,
        UsersCommand::Disable(arg) => change(client, &arg.user, "disable").await,
        UsersCommand::Enable(arg) => change(client, &arg.user, "enable").await,
    }
}

async fn change(client: &mut Client, user: &str, action: &str) -> anyhow::Result<()> {
    let id = resolve(client, user).await?;
    let user = client
        .post(&format!("/admin/users/{id}/{action}"), None)
        .await?;
    print_users(client, &[user])
}

/// The id of `user`, given as an id or as an email address (looked up).
async fn resolve(client: &mut Client, user: &str) -> anyhow::Result<String> {
    if !user.contains('@') {
        return Ok(user.to_string());
    }
    let page = client
        .get(&format!("/admin/users?email={}", query_escape(user)))
        .await?;
    match page["items"][0]["id"].as_str() {
        Some(id) => Ok(id.to_string()),
        None => bail!("no account has the email {user}"),
    }
}

/// `text` as a query value: everything but the unreserved characters percent-encoded.
fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn print_users(client: &Client, users: &[Value]) -> anyhow::Result<()> {
    if client.json {
        return print_json(&Value::Array(users.to_vec()));
    }
    let mut table = Table::new(&[
        "ID", "EMAIL", "NAME", "ROLE", "STATUS", "SESSIONS", "CREATED",
    ]);
    for user in users {
        table.row(vec![
            cell(&user["id"]),
            cell(&user["email"]),
            cell(&user["name"]),
            cell(&user["role"]),
            cell(&user["status"]),
            cell(&user["live_sessions"]),
            cell(&user["created_at"]),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

fn print_user(client: &Client, user: &Value) -> anyhow::Result<()> {
    if client.json {
        return print_json(user);
    }
    println!("id            {}", cell(&user["id"]));
    println!("email         {}", cell(&user["email"]));
    println!("name          {}", cell(&user["name"]));
    println!("role          {}", cell(&user["role"]));
    println!("status        {}", cell(&user["status"]));
    if !user["disabled_at"].is_null() {
        println!("disabled      {}", cell(&user["disabled_at"]));
    }
    println!("sessions      {}", cell(&user["live_sessions"]));
    println!("created       {}", cell(&user["created_at"]));
    for (label, field) in [("phone", "phone"), ("address", "address")] {
        if !user[field].is_null() {
            println!("{label:<14}{}", cell(&user[field]));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_email_is_escaped_for_a_query() {
        assert_eq!(
            super::query_escape("a+b@example.com"),
            "a%2Bb%40example.com"
        );
    }
}
