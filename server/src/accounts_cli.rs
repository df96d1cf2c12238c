//! `parc-server user …`: creates dashboard/API accounts, sets passwords, issues and
//! revokes API tokens. Passwords come from `PARC_PASSWORD` or the first line of
//! standard input, never from the command line (it would show in `ps` and histories).
//!
//! Wiring only: the checks are `crate::auth`'s, the SQL the store's.

use std::io::BufRead as _;

use anyhow::Context as _;
use clap::Subcommand;

use crate::auth::{Role, check_account, hash_password, new_api_token};
use crate::store::{NewAccount, Store};

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Create an account. The password is read from PARC_PASSWORD or standard input.
    Add {
        login: String,
        /// admin, technician, holder or viewer.
        #[arg(long)]
        role: String,
        /// Name shown in the dashboard (default: the login).
        #[arg(long)]
        name: Option<String>,
        /// Organisation id (technician; optional for viewer).
        #[arg(long)]
        organisation: Option<String>,
        /// Contract holder id (holder).
        #[arg(long)]
        holder: Option<String>,
    },
    /// Set an account's password (read like `add`'s) and end its sessions.
    Passwd { login: String },
    /// List accounts (never their hashes).
    List,
    /// Issue an API token for an account and print it once (only its hash is stored).
    Token {
        login: String,
        #[arg(long)]
        label: String,
        /// Days until it expires (default: never).
        #[arg(long)]
        days: Option<u32>,
    },
    /// Revoke an API token by its id (`pat_…`).
    RevokeToken { id: String },
}

fn read_password() -> anyhow::Result<String> {
    let pw = match std::env::var("PARC_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    anyhow::ensure!(
        pw.chars().count() >= 12,
        crate::auth::AccountError::WeakPassword
    );
    Ok(pw)
}

/// Creates an account after checking its role and attachments.
pub async fn add_account(
    store: &Store,
    login: &str,
    name: Option<&str>,
    role: &str,
    organisation: Option<&str>,
    holder: Option<&str>,
    password: &str,
) -> anyhow::Result<()> {
    let role = Role::parse(role)
        .ok_or_else(|| crate::auth::AccountError::UnknownRole(role.to_string()))?;
    check_account(login, role, organisation, holder)?;
    anyhow::ensure!(
        password.chars().count() >= 12,
        crate::auth::AccountError::WeakPassword
    );
    let hash = {
        let pw = password.to_string();
        tokio::task::spawn_blocking(move || hash_password(&pw)).await?
    };
    store
        .create_account(
            &NewAccount {
                login,
                display_name: name.unwrap_or(login),
                password_hash: &hash,
                role,
                organisation_id: organisation,
                holder_id: holder,
            },
            chrono::Utc::now(),
        )
        .await??;
    Ok(())
}

/// Issues an API token for `login`; returns the whole token (shown once).
pub async fn issue_token(
    store: &Store,
    login: &str,
    label: &str,
    days: Option<u32>,
) -> anyhow::Result<String> {
    anyhow::ensure!(!label.trim().is_empty(), "--label must not be empty");
    let (id, secret, token) = new_api_token();
    let now = chrono::Utc::now();
    let expires = days.map(|d| now + chrono::Duration::days(i64::from(d)));
    anyhow::ensure!(
        store
            .create_api_token(
                &id,
                &crate::enroll::sha256_hex(&secret),
                login,
                label.trim(),
                now,
                expires
            )
            .await?,
        "no account `{login}`"
    );
    Ok(token)
}

pub async fn run(store: &Store, action: UserAction) -> anyhow::Result<()> {
    match action {
        UserAction::Add {
            login,
            role,
            name,
            organisation,
            holder,
        } => {
            let password = read_password()?;
            add_account(
                store,
                &login,
                name.as_deref(),
                &role,
                organisation.as_deref(),
                holder.as_deref(),
                &password,
            )
            .await?;
            println!("account {login} created ({role})");
        }
        UserAction::Passwd { login } => {
            let password = read_password()?;
            let hash = tokio::task::spawn_blocking(move || hash_password(&password)).await?;
            anyhow::ensure!(
                store.set_password(&login, &hash).await?,
                "no account `{login}`"
            );
            println!("password of {login} changed; its sessions are closed");
        }
        UserAction::List => {
            for a in store.accounts().await? {
                println!(
                    "{}\t{}\t{}{}{}\t{}",
                    a.login,
                    a.role.as_str(),
                    a.organisation_id
                        .map(|o| format!("organisation={o}"))
                        .unwrap_or_default(),
                    a.holder_id
                        .map(|h| format!("holder={h}"))
                        .unwrap_or_default(),
                    if a.disabled { " disabled" } else { "" },
                    a.display_name
                );
            }
        }
        UserAction::Token { login, label, days } => {
            let token = issue_token(store, &login, &label, days).await?;
            println!("{token}");
            eprintln!(
                "API token for {login}: shown only now; send it as `Authorization: Bearer …`."
            );
        }
        UserAction::RevokeToken { id } => {
            anyhow::ensure!(
                store.revoke_api_token(&id, chrono::Utc::now()).await?,
                "no active API token with id {id}"
            );
            println!("API token {id} revoked");
        }
    }
    Ok(())
}
