use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_listen_on_cedar_agent_port() {
    let config = Config::load(Some(Path::new("/dev/null")), vars(&[])).unwrap();
    assert_eq!(config.server.listen.port(), 8180);
    assert!(matches!(config.store, StoreConfig::Sqlite { .. }));
}

#[test]
fn unknown_key_is_named_in_the_error() {
    let err = Config::from_toml_str("[server]\nlisten_addr = \"x\"\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("server"), "{text}");
    assert!(text.contains("listen_addr"), "{text}");
}

#[test]
fn invalid_value_is_named_in_the_error() {
    let err = Config::from_toml_str("[server]\nlisten = \"not an address\"\n").unwrap_err();
    assert!(err.to_string().contains("server.listen"), "{err}");
}

#[test]
fn zero_batch_limit_is_refused() {
    let err = Config::from_toml_str("[server]\nbatch_limit = 0\n").unwrap_err();
    assert!(err.to_string().contains("server.batch_limit"), "{err}");
}

#[test]
fn env_overrides_file_values_with_typed_values() {
    let config = Config::load(
        Some(Path::new("/dev/null")),
        vars(&[
            ("PORTCULLIS_SERVER__LISTEN", "0.0.0.0:9999"),
            ("PORTCULLIS_CACHE__DECISION_CAPACITY", "7"),
            ("PORTCULLIS_POLICIES__WATCH", "false"),
            ("UNRELATED", "1"),
        ]),
    )
    .unwrap();
    assert_eq!(config.server.listen.port(), 9999);
    assert_eq!(config.cache.decision_capacity, 7);
    assert!(!config.policies.watch);
}

#[test]
fn env_override_of_unknown_key_is_refused() {
    let err = Config::load(
        Some(Path::new("/dev/null")),
        vars(&[("PORTCULLIS_SERVER__NOPE", "1")]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn store_kind_must_be_known() {
    let err = Config::from_toml_str("[store]\nkind = \"oracle\"\n").unwrap_err();
    assert!(err.to_string().contains("store"), "{err}");
}

#[test]
fn store_path_alone_keeps_the_default_kind() {
    let config = Config::load(
        Some(Path::new("/dev/null")),
        vars(&[("PORTCULLIS_STORE__PATH", "/tmp/x.db")]),
    )
    .unwrap();
    match config.store {
        StoreConfig::Sqlite { path } => assert_eq!(path, Path::new("/tmp/x.db")),
        other => panic!("expected sqlite, got {other:?}"),
    }
}

#[test]
fn postgres_and_redis_stores_take_defaults_and_are_checked() {
    let pg = Config::from_toml_str(
        "[store]\nkind = \"postgres\"\nurl = \"postgres://127.0.0.1/test\"\n",
    )
    .unwrap();
    assert!(matches!(pg.store, StoreConfig::Postgres { ref schema, .. } if schema == "portcullis"));
    let bad = Config::from_toml_str(
        "[store]\nkind = \"postgres\"\nurl = \"postgres://x\"\nschema = \"Robert'); DROP\"\n",
    )
    .unwrap_err();
    assert!(bad.to_string().contains("store.schema"), "{bad}");
    let redis =
        Config::from_toml_str("[store]\nkind = \"redis\"\nurl = \"http://x\"\n").unwrap_err();
    assert!(redis.to_string().contains("store.url"), "{redis}");
}

#[test]
fn admin_token_is_checked_and_never_printed() {
    let err = Config::from_toml_str("[server]\nadmin_token = \"short\"\n").unwrap_err();
    assert!(err.to_string().contains("server.admin_token"), "{err}");
    let config =
        Config::from_toml_str("[server]\nadmin_token = \"0123456789abcdef-secret\"\n").unwrap();
    let token = config.server.admin_token.as_ref().unwrap();
    assert!(token.matches(b"0123456789abcdef-secret"));
    assert!(!token.matches(b"0123456789abcdef-secreT"));
    assert!(!format!("{config:?}").contains("secret"));
}

const LDAP: &str = r#"
[backends.corp]
kind = "ldap"
url = "ldap://127.0.0.1:389"
bind_dn = "cn=admin,dc=example,dc=com"
bind_password = "secret"
user_base = "ou=people,dc=example,dc=com"
group_base = "ou=groups,dc=example,dc=com"
"#;

#[test]
fn directories_are_backends_with_their_own_keys() {
    let config = Config::load(
        Some(Path::new("/dev/null")),
        vars(&[
            ("PORTCULLIS_BACKENDS__CORP__KIND", "ldap"),
            ("PORTCULLIS_BACKENDS__CORP__URL", "ldap://127.0.0.1:389"),
            ("PORTCULLIS_BACKENDS__CORP__BIND_DN", "cn=admin,dc=x"),
            ("PORTCULLIS_BACKENDS__CORP__BIND_PASSWORD", "from-the-env"),
            ("PORTCULLIS_BACKENDS__CORP__USER_BASE", "ou=people,dc=x"),
            ("PORTCULLIS_BACKENDS__CORP__GROUP_BASE", "ou=groups,dc=x"),
        ]),
    )
    .unwrap();
    let corp = &config.backends["corp"];
    assert_eq!(corp.kind(), "ldap");
    // The secret is never printed.
    assert!(!format!("{corp:?}").contains("from-the-env"));
    assert!(stores(&config.backends).is_empty());

    let parsed = Config::from_toml_str(LDAP).unwrap();
    let BackendConfig::Directory(directory) = &parsed.backends["corp"] else {
        panic!("an ldap backend is a directory");
    };
    let DirectoryConfig::Ldap(ldap) = directory.as_ref() else {
        panic!("kind ldap");
    };
    assert_eq!(ldap.attributes.username, "uid");
    assert!(ldap.user_filter.contains("{username}"));
}

#[test]
fn directory_mistakes_are_named() {
    let typo = Config::from_toml_str(&LDAP.replace("bind_dn", "bind_dnn")).unwrap_err();
    assert!(typo.to_string().contains("backends.corp"), "{typo}");
    assert!(typo.to_string().contains("bind_dnn"), "{typo}");
    let scheme = Config::from_toml_str(&LDAP.replace("ldap://", "http://")).unwrap_err();
    assert!(scheme.to_string().contains("backends.corp.url"), "{scheme}");
    let filter = Config::from_toml_str(&format!("{LDAP}user_filter = \"(uid=x)\"\n")).unwrap_err();
    assert!(filter.to_string().contains("user_filter"), "{filter}");
    let kind = Config::from_toml_str("[backends.x]\nkind = \"kerberos\"\n").unwrap_err();
    assert!(kind.to_string().contains("kerberos"), "{kind}");
    let oidc = Config::from_toml_str(
        "[backends.op]\nkind = \"oidc\"\nissuer = \"https://op\"\nclient_id = \"c\"\nredirect_url = \"https://me/cb\"\nscopes = [\"email\"]\n",
    )
    .unwrap_err();
    assert!(oidc.to_string().contains("backends.op.scopes"), "{oidc}");
    let provider = "[backends.op]\nkind = \"oidc\"\nissuer = \"https://op\"\nclient_id = \"c\"\nredirect_url = \"https://me/cb\"\n[backends.op.bearer]\n";
    let pinned = Config::from_toml_str(provider).unwrap();
    let Some(BackendConfig::Directory(directory)) = pinned.backends.get("op") else {
        panic!("op is a directory");
    };
    let DirectoryConfig::Oidc(op) = directory.as_ref() else {
        panic!("op is an OIDC provider");
    };
    assert_eq!(op.bearer.as_ref().unwrap().algorithms, ["RS256"]);
    for (bad, why) in [
        ("algorithms = [\"HS256\"]", "never accepted"),
        ("algorithms = [\"none\"]", "never accepted"),
        ("algorithms = []", "at least one"),
        ("audiences = [\"\"]", "empty"),
    ] {
        let err = Config::from_toml_str(&format!("{provider}{bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("backends.op.bearer") && err.contains(why),
            "{bad}: {err}"
        );
    }
}

#[test]
fn open_data_routes_need_a_loopback_listen_address() {
    let open = "[server]\nopen_data_routes = true\n";
    assert!(Config::from_toml_str(open).is_ok());
    let err = Config::from_toml_str(&format!("{open}listen = \"0.0.0.0:8180\"\n")).unwrap_err();
    assert!(err.to_string().contains("server.open_data_routes"), "{err}");
    assert!(Config::from_toml_str("[server]\nlisten = \"0.0.0.0:8180\"\n").is_ok());
}

#[test]
fn request_limits_are_checked() {
    for (text, key) in [
        ("max_json_depth = 1", "server.max_json_depth"),
        ("max_json_depth = 129", "server.max_json_depth"),
        ("max_request_entities = 0", "server.max_request_entities"),
        ("max_headers = 101", "server.max_headers"),
        ("max_header_bytes = 100", "server.max_header_bytes"),
        ("max_connections = 0", "server.max_connections"),
    ] {
        let err = Config::from_toml_str(&format!("[server]\n{text}\n")).unwrap_err();
        assert!(err.to_string().contains(key), "{text}: {err}");
    }
    for (text, key) in [
        ("max_count = 0", "policies.max_count"),
        ("max_policy_bytes = 255", "policies.max_policy_bytes"),
        ("max_policy_bytes = 16777217", "policies.max_policy_bytes"),
    ] {
        let err = Config::from_toml_str(&format!("[policies]\n{text}\n")).unwrap_err();
        assert!(err.to_string().contains(key), "{text}: {err}");
    }
    let config =
        Config::from_toml_str("[policies]\nmax_count = 1\nmax_policy_bytes = 256\n").unwrap();
    assert_eq!(config.policies.limits().max_policy_bytes, 256);
    let config =
        Config::from_toml_str("[server]\nmax_headers = 100\nmax_json_depth = 2\n").unwrap();
    assert_eq!(config.server.max_headers, 100);
}

#[test]
fn log_filters_are_plain_directives() {
    for ok in [
        "info",
        "portcullis=debug,sqlx=warn",
        "warn,portcullis::api=TRACE",
        "portcullis",
    ] {
        let config = Config::from_toml_str(&format!("[log]\nlevel = \"{ok}\"\n"));
        assert!(config.is_ok(), "{ok}: {:?}", config.err());
    }
    // Found by the `config` fuzz target: a field filter whose regular
    // expression took minutes to compile. It is refused before that.
    let slow = concat!(
        "[[@+[[[C[[[[[{ typ(e =c_l>I*IIIIIIIIIIIIIIIIIIIIIIIII",
        "...........................................................",
        "IIIIIIIIIIIIIIIIIIIIIIIIII$IIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIII",
        "in*_tt|ttlmety_}eco5"
    );
    for bad in [slow, "info,[span{field=1}]=debug", "portcullis=loud", "a b"] {
        let err = Config::from_toml_str(&format!("[log]\nlevel = {bad:?}\n")).unwrap_err();
        assert!(err.to_string().contains("log.level"), "{bad}: {err}");
    }
}
