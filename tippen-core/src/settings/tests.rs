use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use crate::enrichment::ProviderKind;
use crate::{KeyRole, ManualClock, MemoryStore, Timestamp};

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn read(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
    Settings::from_vars(vars(pairs))
}

fn sites(json: &str) -> Result<Settings, SettingsError> {
    read(&[("TIPPEN_SITES", json)])
}

fn site_problem(json: &str) -> (String, SiteProblem) {
    match sites(json).unwrap_err() {
        SettingsError::Site {
            name: "TIPPEN_SITES",
            site,
            problem,
        } => (site, problem),
        other => panic!("{json}: {other:?}"),
    }
}

#[test]
fn nothing_set_is_the_defaults() {
    let s = read(&[]).unwrap();
    assert_eq!(s.config, Config::default());
    assert!(s.sites.is_empty());
    assert_eq!(s.video_provider_url, None);
    assert!(s.slack.is_none() && s.enrichment.is_none());
    let blank = read(&[
        ("TIPPEN_SITES", " "),
        ("TIPPEN_HEARTBEAT_MS", ""),
        ("TIPPEN_VIDEO_PROVIDER_URL", "  "),
        ("TIPPEN_ENRICHMENT_PROVIDER", ""),
    ])
    .unwrap();
    assert_eq!(blank, s, "blank values count as unset");
}

#[test]
fn a_good_configuration_is_read_whole() {
    let s = read(&[
        (
            "TIPPEN_SITES",
            r#"[{"id":"a","name":"A","publicKey":"pk_a","secretKey":"sk_a_0123456789abcdefghij"},
                {"id":"demo","legacyKey":"demo_api_key_0123456789ab","honorGpc":false}]"#,
        ),
        ("TIPPEN_HEARTBEAT_MS", "1000"),
        ("TIPPEN_VISIBLE_GRACE_MS", "2000"),
        ("TIPPEN_HIDDEN_GRACE_MS", " 5000 "),
        ("TIPPEN_INVITE_TTL_MS", "4000"),
        ("TIPPEN_LEAVE_LINGER_MS", "500"),
        ("TIPPEN_VIDEO_PROVIDER_URL", " https://video.example/ "),
        ("TIPPEN_SLACK_WEBHOOK_URL", "http://127.0.0.1:8806/hook"),
        ("TIPPEN_PUBLIC_URL", "https://tippen.example"),
        ("TIPPEN_ENRICHMENT_PROVIDER", "ipinfo"),
        ("TIPPEN_ENRICHMENT_API_KEY", "tok"),
        ("TIPPEN_ENRICHMENT_BASE_URL", "http://127.0.0.1:8822"),
        ("TIPPEN_SUPPORT_STUCK_AFTER_MS", "1000"),
        ("TIPPEN_SUPPORT_ERROR_BURST_MAX", "5"),
        ("TIPPEN_SUPPORT_STUCK_TIERS", "paid, enterprise"),
        ("TIPPEN_SUPPORT_LOW_ACTIVITY_TIERS", "none"),
        ("TIPPEN_SUPPORT_INACTIVITY_TIERS", "all"),
        ("TIPPEN_SUPPORT_MAX_RAW_EVENTS", "0"),
    ])
    .unwrap();

    assert_eq!(s.sites.len(), 2);
    let a = s.site("a").unwrap();
    assert_eq!(a.name, "A");
    assert_eq!(a.role_of(&KeyHash::of("pk_a")), Some(KeyRole::Public));
    assert_eq!(
        a.role_of(&KeyHash::of("sk_a_0123456789abcdefghij")),
        Some(KeyRole::Secret)
    );
    assert!(
        !a.legacy_single_key && a.honor_gpc,
        "GPC is honoured by default"
    );
    let demo = s.site("demo").unwrap();
    assert!(demo.legacy_single_key && demo.public_key_hash.is_none());
    assert_eq!(
        demo.role_of(&KeyHash::of("demo_api_key_0123456789ab")),
        Some(KeyRole::Secret)
    );
    assert!(!demo.honor_gpc);
    assert_eq!(demo.name, "demo", "the name defaults to the id");

    let p = &s.config.presence;
    assert_eq!(p.heartbeat_interval, Duration::from_secs(1));
    assert_eq!(p.visible_grace, Duration::from_secs(2));
    assert_eq!(p.hidden_grace, Duration::from_secs(5));
    assert_eq!(s.config.invites.ttl, Duration::from_secs(4));
    assert_eq!(p.leave_linger, Duration::from_millis(500));
    assert_eq!(
        s.video_provider_url.as_deref(),
        Some("https://video.example/")
    );

    let slack = s.slack.as_ref().unwrap();
    assert_eq!(slack.webhook.expose(), "http://127.0.0.1:8806/hook");
    assert_eq!(
        slack.dashboard_base_url.as_deref(),
        Some("https://tippen.example")
    );
    let provider = s.enrichment.as_ref().unwrap();
    assert_eq!(provider.kind, ProviderKind::Ipinfo);
    assert_eq!(provider.base_url.as_deref(), Some("http://127.0.0.1:8822"));

    let support = &s.config.support;
    assert_eq!(support.stuck_after, Duration::from_secs(1));
    assert_eq!(support.error_burst_max, 5);
    assert_eq!(support.max_raw_events, 0, "counts may be 0");
    assert!(support.stuck.applies_to(Some(SubscriptionTier::Paid)));
    assert!(!support.stuck.applies_to(Some(SubscriptionTier::FreeTrial)));
    assert!(!support.low_activity.enabled);
    assert!(support.inactivity.applies_to(None));
    assert_eq!(support.error_burst, SupportConfig::default().error_burst);
    assert_eq!(support.retention, SupportConfig::default().retention);
}

#[test]
fn the_leave_linger_defaults_to_two_seconds_and_may_be_zero() {
    let default = read(&[]).unwrap();
    assert_eq!(default.config.presence.leave_linger, Duration::from_secs(2));
    let zero = read(&[("TIPPEN_LEAVE_LINGER_MS", "0")]).unwrap();
    assert_eq!(zero.config.presence.leave_linger, Duration::ZERO);
    assert_eq!(
        read(&[("TIPPEN_LEAVE_LINGER_MS", "2s")]).unwrap_err(),
        SettingsError::NotANumber {
            name: "TIPPEN_LEAVE_LINGER_MS",
            value: "2s".into()
        }
    );
}

#[test]
fn snapshot_reuse_defaults_to_a_second_and_zero_turns_it_off() {
    let default = read(&[]).unwrap();
    assert_eq!(default.config.limits.snapshot_reuse, Duration::from_secs(1));
    let set = read(&[("TIPPEN_SNAPSHOT_REUSE_MS", "250")]).unwrap();
    assert_eq!(set.config.limits.snapshot_reuse, Duration::from_millis(250));
    let zero = read(&[("TIPPEN_SNAPSHOT_REUSE_MS", "0")]).unwrap();
    assert_eq!(zero.config.limits.snapshot_reuse, Duration::ZERO);
    assert!(read(&[("TIPPEN_SNAPSHOT_REUSE_MS", "-1")]).is_err());
}

#[test]
fn socket_urls_must_be_ws_urls() {
    let s = read(&[
        (
            "TIPPEN_DASHBOARD_WS_URL",
            "wss://abc.execute-api.us-east-1.amazonaws.com/prod",
        ),
        (
            "TIPPEN_VISITOR_WS_URL",
            " wss://abc.execute-api.us-east-1.amazonaws.com/prod?role=visitor ",
        ),
    ])
    .unwrap();
    let sockets = &s.config.sockets;
    assert_eq!(
        sockets.dashboard.as_deref(),
        Some("wss://abc.execute-api.us-east-1.amazonaws.com/prod")
    );
    assert_eq!(
        sockets.visitor.as_deref(),
        Some("wss://abc.execute-api.us-east-1.amazonaws.com/prod?role=visitor")
    );
    assert_eq!(read(&[]).unwrap().config.sockets, Default::default());
    for bad in [
        "https://x.example/ws",
        "ws://",
        "wss://x.example/\"><script>",
    ] {
        assert_eq!(
            read(&[("TIPPEN_VISITOR_WS_URL", bad)]).unwrap_err(),
            SettingsError::NotWsUrl {
                name: "TIPPEN_VISITOR_WS_URL",
                value: bad.into()
            },
            "{bad}"
        );
    }
}

#[test]
fn numbers_must_be_whole_and_timings_positive() {
    assert_eq!(
        read(&[("TIPPEN_VISIBLE_GRACE_MS", "2s")]).unwrap_err(),
        SettingsError::NotANumber {
            name: "TIPPEN_VISIBLE_GRACE_MS",
            value: "2s".into()
        }
    );
    for name in [
        "TIPPEN_HEARTBEAT_MS",
        "TIPPEN_INVITE_TTL_MS",
        "TIPPEN_SUPPORT_ERROR_WINDOW_MS",
        "TIPPEN_SUPPORT_RETENTION_MS",
    ] {
        let e = read(&[(name, "0")]).unwrap_err();
        assert_eq!(e, SettingsError::Zero { name }, "{name}");
        assert_eq!(e.to_string(), format!("{name} must be at least 1"));
    }
    assert!(matches!(
        read(&[("TIPPEN_SUPPORT_ERROR_BURST_MAX", "-1")]).unwrap_err(),
        SettingsError::NotANumber {
            name: "TIPPEN_SUPPORT_ERROR_BURST_MAX",
            ..
        }
    ));
}

#[test]
fn urls_must_be_http_or_https_with_a_host() {
    for bad in ["ftp://x", "video.example", "https://", "http:///path"] {
        assert_eq!(
            read(&[("TIPPEN_VIDEO_PROVIDER_URL", bad)]).unwrap_err(),
            SettingsError::NotHttpUrl {
                name: "TIPPEN_VIDEO_PROVIDER_URL",
                value: bad.into()
            },
            "{bad}"
        );
    }
    let slack = |hook: &str, public: &str| {
        read(&[
            ("TIPPEN_SLACK_WEBHOOK_URL", hook),
            ("TIPPEN_PUBLIC_URL", public),
        ])
    };
    assert_eq!(
        slack("hooks", "").unwrap_err(),
        SettingsError::Slack {
            name: "TIPPEN_SLACK_WEBHOOK_URL",
            problem: SlackError::InvalidWebhookUrl
        }
    );
    assert!(matches!(
        slack("http://127.0.0.1:8806/hook", "tippen.example").unwrap_err(),
        SettingsError::Slack {
            name: "TIPPEN_PUBLIC_URL",
            problem: SlackError::InvalidPublicUrl(_)
        }
    ));
    // Without Slack's webhook the public URL is still used (links in alerts), so checked.
    assert_eq!(
        slack("", "tippen.example").unwrap_err(),
        SettingsError::NotHttpUrl {
            name: "TIPPEN_PUBLIC_URL",
            value: "tippen.example".into()
        }
    );
    let alone = slack("", "https://tippen.example").unwrap();
    assert!(alone.slack.is_none());
    assert_eq!(
        alone.config.alerts.public_url.as_deref(),
        Some("https://tippen.example")
    );
}

#[test]
fn tiers_are_all_none_or_known_ones() {
    let e = read(&[("TIPPEN_SUPPORT_STUCK_TIERS", "paid,gold")]).unwrap_err();
    assert_eq!(
        e,
        SettingsError::UnknownTier {
            name: "TIPPEN_SUPPORT_STUCK_TIERS",
            tier: "gold".into()
        }
    );
    assert!(matches!(
        read(&[("TIPPEN_SUPPORT_ERROR_BURST_TIERS", "all,paid")]).unwrap_err(),
        SettingsError::UnknownTier { tier, .. } if tier == "all"
    ));
}

#[test]
fn enrichment_errors_name_the_setting_at_fault() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[
                ("TIPPEN_ENRICHMENT_PROVIDER", "maxmind"),
                ("TIPPEN_ENRICHMENT_API_KEY", "k"),
            ],
            "TIPPEN_ENRICHMENT_PROVIDER",
        ),
        (
            &[("TIPPEN_ENRICHMENT_PROVIDER", "ipinfo")],
            "TIPPEN_ENRICHMENT_API_KEY",
        ),
        (
            &[("TIPPEN_ENRICHMENT_API_KEY", "k")],
            "TIPPEN_ENRICHMENT_PROVIDER",
        ),
        (
            &[
                ("TIPPEN_ENRICHMENT_PROVIDER", "ipinfo"),
                ("TIPPEN_ENRICHMENT_API_KEY", "k"),
                ("TIPPEN_ENRICHMENT_BASE_URL", "ftp://x"),
            ],
            "TIPPEN_ENRICHMENT_BASE_URL",
        ),
        (
            &[
                ("TIPPEN_ENRICHMENT_PROVIDER", "ipinfo"),
                ("TIPPEN_ENRICHMENT_API_KEY", "bad\nkey"),
            ],
            "TIPPEN_ENRICHMENT_API_KEY",
        ),
    ];
    for (pairs, expected) in cases {
        match read(pairs) {
            Err(SettingsError::Enrichment { name, .. }) => assert_eq!(name, expected, "{pairs:?}"),
            other => panic!("{pairs:?}: {other:?}"),
        }
    }
}

#[test]
fn the_site_list_must_be_json_of_known_fields() {
    for json in ["{", r#"{"id":"a"}"#, r#"[{"id":"a","pubKey":"x"}]"#] {
        assert!(
            matches!(
                sites(json),
                Err(SettingsError::SitesJson {
                    name: "TIPPEN_SITES",
                    ..
                })
            ),
            "{json}"
        );
    }
}

#[test]
fn each_site_needs_a_legacy_key_or_both_keys() {
    for json in [
        r#"[{"id":"a","publicKey":"pk"}]"#,
        r#"[{"id":"a","secretKey":"sk"}]"#,
        r#"[{"id":"a"}]"#,
        r#"[{"id":"a","publicKey":"pk","secretKey":"sk","legacyKey":"k"}]"#,
    ] {
        assert_eq!(
            site_problem(json),
            ("a".into(), SiteProblem::Keys),
            "{json}"
        );
    }
    let e = sites(r#"[{"id":"a","publicKey":"pk"}]"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"TIPPEN_SITES: site "a": give publicKey and secretKey, or legacyKey"#
    );
}

#[test]
fn keys_must_be_non_empty_and_distinct() {
    for json in [
        r#"[{"id":"a","legacyKey":""}]"#,
        r#"[{"id":"a","publicKey":"","secretKey":"sk"}]"#,
        r#"[{"id":"a","publicKey":"pk","secretKey":""}]"#,
    ] {
        assert_eq!(
            site_problem(json),
            ("a".into(), SiteProblem::EmptyKey),
            "{json}"
        );
    }
    assert_eq!(
        site_problem(r#"[{"id":"a","publicKey":"k","secretKey":"k"}]"#),
        ("a".into(), SiteProblem::SameKeys)
    );
}

#[test]
fn ids_must_be_short_plain_and_unique() {
    let long = "x".repeat(65);
    for id in ["", "a b", "a/b", "é", long.as_str()] {
        let json = format!(r#"[{{"id":"{id}","legacyKey":"k"}}]"#);
        assert_eq!(
            site_problem(&json),
            (id.to_owned(), SiteProblem::InvalidId),
            "{id}"
        );
    }
    assert!(sites(r#"[{"id":"A-z_0.9","legacyKey":"demo_api_key_0123456789ab"}]"#).is_ok());
    assert_eq!(
        site_problem(r#"[{"id":"a","legacyKey":"k"},{"id":"a","legacyKey":"j"}]"#),
        ("a".into(), SiteProblem::DuplicateId)
    );
}

#[test]
fn a_key_belongs_to_one_site_in_one_role() {
    let reused = |json| site_problem(json);
    let by_a = SiteProblem::ReusedKey { other: "a".into() };
    // The same key as a legacy key and as another site's public or secret key, or as two
    // sites' public keys.
    assert_eq!(
        reused(r#"[{"id":"a","legacyKey":"k"},{"id":"b","publicKey":"k","secretKey":"s"}]"#),
        ("b".into(), by_a.clone())
    );
    assert_eq!(
        reused(r#"[{"id":"a","publicKey":"p","secretKey":"k"},{"id":"b","legacyKey":"k"}]"#),
        ("b".into(), by_a.clone())
    );
    assert_eq!(
        reused(
            r#"[{"id":"a","publicKey":"p","secretKey":"s"},{"id":"b","publicKey":"s","secretKey":"t"}]"#
        ),
        ("b".into(), by_a.clone())
    );
    assert_eq!(
        reused(
            r#"[{"id":"a","publicKey":"p","secretKey":"s"},{"id":"b","publicKey":"p","secretKey":"t"}]"#
        ),
        ("b".into(), by_a)
    );
}

#[test]
fn a_lookup_names_where_each_value_came_from() {
    // The reference server's way: its file's values, named by their field, under the
    // environment's.
    let file = |name: &'static str| match name {
        names::HIDDEN_GRACE_MS => Some(Setting::new("presence.hidden_grace_ms", "0")),
        names::PUBLIC_URL => Some(Setting::new("public_url", "tippen.example")),
        names::SLACK_WEBHOOK_URL => Some(Setting::new("support.slack_webhook_url", "https://h/x")),
        _ => None,
    };
    let specs = vec![SiteSpec {
        id: "a".into(),
        name: None,
        keys: SiteKeys::Pair {
            public: "p".into(),
            secret: SecretKey::Sha256(KeyHash::of("p")),
        },
        honor_gpc: None,
        honor_dnt: None,
        guest_url_origins: Vec::new(),
        dashboard_origins: Vec::new(),
        identity_secret: None,
        history_retention_days: None,
        rate_limit_per_key: None,
        socket_quotas: Default::default(),
        alert_rules: Vec::new(),
        alert_destinations: Default::default(),
    }];
    let env = env_lookup(vars(&[("TIPPEN_HIDDEN_GRACE_MS", "7000")]));
    let lookup = |name| env(name).or_else(|| file(name));
    assert_eq!(
        Settings::from_lookup(lookup, "sites", specs.clone()).unwrap_err(),
        SettingsError::Site {
            name: "sites",
            site: "a".into(),
            problem: SiteProblem::SameKeys
        },
        "a key given as its hash is checked too"
    );
    let e = Settings::from_lookup(lookup, "sites", Vec::new()).unwrap_err();
    assert!(
        e.to_string().starts_with("public_url: "),
        "the file's field is named: {e}"
    );
    let e = Settings::from_lookup(file, "sites", Vec::new()).unwrap_err();
    assert_eq!(
        e,
        SettingsError::Zero {
            name: "presence.hidden_grace_ms"
        }
    );
}

#[test]
fn secrets_stay_out_of_debug() {
    let s = Setting::new("TIPPEN_ENRICHMENT_API_KEY", "tok_secret");
    assert!(!format!("{s:?}").contains("tok_secret"));
    assert!(!format!("{:?}", SecretKey::Plain("sk_secret".into())).contains("sk_secret"));
}

#[test]
fn registering_writes_only_what_changed() {
    futures_util::FutureExt::now_or_never(async {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
        let tippen = Tippen::new(Arc::new(MemoryStore::new()), clock, Config::default());
        let sites = sites(
            r#"[{"id":"a","publicKey":"pk_a","secretKey":"sk_a_0123456789abcdefghij"},{"id":"b","legacyKey":"demo_api_key_0123456789ab"}]"#,
        )
        .unwrap()
        .sites;
        assert_eq!(register_sites(&tippen, &sites).await.unwrap(), 2);
        assert_eq!(register_sites(&tippen, &sites).await.unwrap(), 0);
        let mut changed = sites.clone();
        changed[1].honor_gpc = false;
        assert_eq!(register_sites(&tippen, &changed).await.unwrap(), 1);
        assert_eq!(tippen.store().sites().await.unwrap().len(), 2);
        assert!(tippen.authenticate("sk_a_0123456789abcdefghij").await.unwrap().is_some());
    })
    .unwrap();
}

#[test]
fn registering_keeps_member_tokens_and_leaves_managed_sites_alone() {
    futures_util::FutureExt::now_or_never(async {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
        let tippen = Tippen::new(Arc::new(MemoryStore::new()), clock, Config::default());
        let configured = sites(
            r#"[{"id":"a","publicKey":"pk_a","secretKey":"sk_a_0123456789abcdefghij"},{"id":"m","publicKey":"pk_m","secretKey":"sk_m_0123456789abcdefghij"}]"#,
        )
        .unwrap()
        .sites;
        register_sites(&tippen, &configured).await.unwrap();
        let member = crate::site::Credential {
            id: "mem_1".into(),
            hash: KeyHash::of("tmk_member"),
            role: KeyRole::Viewer,
            name: Some("Vera".into()),
            created_at: Timestamp::from_millis(0),
            expires_at: None,
        };
        let mut a = configured[0].clone();
        a.credentials.push(member);
        tippen.put_site(&a).await.unwrap();
        // The operator took "m" over and rotated its secret key.
        let mut m = configured[1].clone();
        m.managed = true;
        m.secret_key_hash = KeyHash::of("tsk_m_rotated_0123456789abcdef");
        tippen.put_site(&m).await.unwrap();
        // The configuration is loaded again (a restart): a changed setting of "a" is written,
        // its member token stays; "m" stays as the operator left it.
        let mut reloaded = configured.clone();
        reloaded[0].honor_gpc = false;
        reloaded[1].honor_gpc = false;
        assert_eq!(register_sites(&tippen, &reloaded).await.unwrap(), 1);
        let stored = tippen.store().sites().await.unwrap();
        let a = stored.iter().find(|s| s.id.as_str() == "a").unwrap();
        assert!(!a.honor_gpc);
        assert_eq!(a.credentials.len(), 1, "the member token stays");
        assert!(tippen.authenticate("tmk_member").await.unwrap().is_some());
        let m = stored.iter().find(|s| s.id.as_str() == "m").unwrap();
        assert!(m.honor_gpc && m.managed, "a managed site is left as stored");
        assert!(tippen.authenticate("sk_m_0123456789abcdefghij").await.unwrap().is_none());
    })
    .unwrap();
}

#[test]
fn the_operator_token_is_read_and_checked() {
    let s = read(&[
        ("TIPPEN_OPERATOR_TOKEN", "op_0123456789abcdef01234567"),
        ("TIPPEN_AUDIT_RETENTION_DAYS", "30"),
    ])
    .unwrap();
    assert_eq!(
        s.config.operator_token,
        Some(KeyHash::of("op_0123456789abcdef01234567"))
    );
    assert_eq!(
        s.config.audit.retention,
        std::time::Duration::from_secs(30 * 86_400)
    );
    let e = read(&[("TIPPEN_OPERATOR_TOKEN", "short")]).unwrap_err();
    assert!(
        e.to_string()
            .contains("TIPPEN_OPERATOR_TOKEN has 5 characters"),
        "{e}"
    );
    assert!(read(&[("TIPPEN_AUDIT_RETENTION_DAYS", "0")]).is_err());
}

#[test]
fn limits_and_quotas_are_read_and_checked() {
    let s = read(&[
        ("TIPPEN_MAX_BODY_BYTES", "1024"),
        ("TIPPEN_MAX_ID_BYTES", "64"),
        ("TIPPEN_MAX_FRAME_BYTES", "512"),
        ("TIPPEN_MAX_TABS_PER_VISITOR", "5"),
        ("TIPPEN_MAX_DEPARTED_TABS", "3"),
        ("TIPPEN_MAX_VISITORS_PER_SITE", "100"),
        ("TIPPEN_MAX_USERS_PER_SITE", "50"),
        ("TIPPEN_OPT_OUT_RETENTION_MS", "60000"),
    ])
    .unwrap();
    let l = &s.config.limits;
    assert_eq!(
        (
            l.max_body_bytes,
            l.max_id_bytes,
            l.max_frame_bytes,
            l.max_departed_tabs,
            l.max_visitors_per_site,
            l.max_users_per_site
        ),
        (1024, 64, 512, 3, 100, 50)
    );
    assert_eq!(s.config.presence.max_tabs_per_visitor, 5);
    assert_eq!(
        s.config.privacy.opt_out_retention,
        std::time::Duration::from_secs(60)
    );
    for name in [
        "TIPPEN_MAX_VISITORS_PER_SITE",
        "TIPPEN_MAX_ID_BYTES",
        "TIPPEN_OPT_OUT_RETENTION_MS",
    ] {
        let e = read(&[(name, "0")]).unwrap_err();
        assert_eq!(e.to_string(), format!("{name} must be at least 1"));
    }
    let e = read(&[("TIPPEN_MAX_USERS_PER_SITE", "lots")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"TIPPEN_MAX_USERS_PER_SITE must be a whole number, got "lots""#
    );
}

#[test]
fn secret_keys_are_long_and_guest_url_origins_https() {
    for json in [
        r#"[{"id":"a","publicKey":"pk_a","secretKey":"sk_acme_secret"}]"#,
        r#"[{"id":"a","legacyKey":"demo_api_key"}]"#,
    ] {
        let (site, problem) = site_problem(json);
        assert_eq!(site, "a");
        assert!(matches!(problem, SiteProblem::ShortKey { .. }), "{json}");
        assert!(problem.to_string().contains("at least 24"), "{problem}");
    }
    // 24 characters are enough; a key given as its hash is not measured.
    assert!(
        sites(r#"[{"id":"a","publicKey":"pk_a","secretKey":"abcdefghijklmnopqrstuvwx"}]"#).is_ok()
    );
    // An identity secret is a secret too.
    let (_, problem) = site_problem(
        r#"[{"id":"a","publicKey":"pk_a","secretKey":"abcdefghijklmnopqrstuvwx","identitySecret":"tooshort"}]"#,
    );
    assert_eq!(problem, SiteProblem::ShortIdentitySecret { chars: 8 });
    let s = sites(
        r#"[{"id":"a","publicKey":"pk_a","secretKey":"abcdefghijklmnopqrstuvwx","identitySecret":"idv_0123456789abcdefghijk"}]"#,
    )
    .unwrap();
    let secret = s.sites[0].identity_secret.as_ref().expect("kept");
    assert!(secret.verify("u", &secret.sign("u")));
    assert!(
        !format!("{:?}", s.sites[0]).contains("idv_0123"),
        "Debug hides it"
    );
    let hashed = SiteSpec {
        id: "a".into(),
        name: None,
        keys: SiteKeys::Legacy(SecretKey::Sha256(KeyHash::of("short"))),
        honor_gpc: None,
        honor_dnt: None,
        guest_url_origins: Vec::new(),
        dashboard_origins: Vec::new(),
        identity_secret: None,
        history_retention_days: None,
        rate_limit_per_key: None,
        socket_quotas: Default::default(),
        alert_rules: Vec::new(),
        alert_destinations: Default::default(),
    };
    assert!(Settings::from_lookup(|_| None, "sites", vec![hashed]).is_ok());

    let s = sites(
        r#"[{"id":"a","legacyKey":"demo_api_key_0123456789ab","guestUrlOrigins":["https://meet.example.com","https://video.example:8443"]}]"#,
    )
    .unwrap();
    assert_eq!(
        s.sites[0].guest_url_origins,
        ["https://meet.example.com", "https://video.example:8443"]
    );
    for bad in [
        "http://meet.example.com",
        "https://meet.example.com/room",
        "meet.example.com",
    ] {
        let json = format!(
            r#"[{{"id":"a","legacyKey":"demo_api_key_0123456789ab","guestUrlOrigins":["{bad}"]}}]"#
        );
        assert_eq!(
            site_problem(&json).1,
            SiteProblem::GuestUrlOrigin { origin: bad.into() },
            "{bad}"
        );
    }
}

#[test]
fn dashboard_origins_are_http_or_https_origins() {
    let s = sites(
        r#"[{"id":"a","legacyKey":"demo_api_key_0123456789ab","dashboardOrigins":["https://dash.example.com","http://localhost:3000"]}]"#,
    )
    .unwrap();
    assert_eq!(
        s.sites[0].dashboard_origins,
        ["https://dash.example.com", "http://localhost:3000"]
    );
    for bad in [
        "https://dash.example.com/app",
        "dash.example.com",
        "ftp://x.test",
    ] {
        let json = format!(
            r#"[{{"id":"a","legacyKey":"demo_api_key_0123456789ab","dashboardOrigins":["{bad}"]}}]"#
        );
        assert_eq!(
            site_problem(&json).1,
            SiteProblem::DashboardOrigin { origin: bad.into() },
            "{bad}"
        );
    }
}

#[test]
fn rate_limits_per_address_and_key_and_a_sites_own() {
    use crate::rate::{RateLimit, RateLimits};
    assert_eq!(read(&[]).unwrap().rate_limits, RateLimits::default());
    let s = read(&[
        ("TIPPEN_RATE_LIMIT_PER_IP", "0"),
        ("TIPPEN_RATE_LIMIT_PER_KEY", "50"),
        (
            "TIPPEN_SITES",
            r#"[{"id":"a","publicKey":"pk_a","secretKey":"sk_a_0123456789abcdefghij","rateLimitPerKey":2},
                {"id":"b","publicKey":"pk_b","secretKey":"sk_b_0123456789abcdefghij"}]"#,
        ),
    ])
    .unwrap();
    assert_eq!(s.rate_limits.per_client, None);
    assert_eq!(s.rate_limits.per_key, Some(RateLimit::new(50, 200)));
    let a = s.site("a").unwrap();
    assert_eq!(a.rate_limit_per_key, Some(RateLimit::new(2, 8)));
    assert_eq!(
        a.key_rate_limit(s.rate_limits.per_key),
        Some(RateLimit::new(2, 8))
    );
    let b = s.site("b").unwrap();
    assert_eq!(
        b.key_rate_limit(s.rate_limits.per_key),
        Some(RateLimit::new(50, 200))
    );
    assert!(matches!(
        read(&[("TIPPEN_RATE_LIMIT_PER_IP", "many")]),
        Err(SettingsError::NotANumber { .. })
    ));
}

#[test]
fn socket_quotas_and_a_sites_own() {
    use crate::quota::QuotaOverrides;
    let d = read(&[]).unwrap().config.limits;
    assert_eq!(
        (
            d.max_sockets_per_site,
            d.max_sockets_per_address,
            d.snapshots_per_minute
        ),
        (5_000, 50, 30)
    );
    let s = read(&[
        ("TIPPEN_MAX_SOCKETS_PER_SITE", "100"),
        ("TIPPEN_MAX_SOCKETS_PER_ADDRESS", "5"),
        ("TIPPEN_SNAPSHOTS_PER_MINUTE", "12"),
        (
            "TIPPEN_SITES",
            r#"[{"id":"a","publicKey":"pk_a","secretKey":"sk_a_0123456789abcdefghij","maxSockets":3,"maxSocketsPerAddress":2,"snapshotsPerMinute":0},
                {"id":"b","publicKey":"pk_b","secretKey":"sk_b_0123456789abcdefghij"}]"#,
        ),
    ])
    .unwrap();
    let l = &s.config.limits;
    assert_eq!(
        (
            l.max_sockets_per_site,
            l.max_sockets_per_address,
            l.snapshots_per_minute
        ),
        (100, 5, 12)
    );
    assert_eq!(
        s.site("a").unwrap().socket_quotas,
        QuotaOverrides {
            max_sockets: Some(3),
            max_sockets_per_address: Some(2),
            snapshots_per_minute: None,
        }
    );
    assert!(s.site("b").unwrap().socket_quotas.is_empty());
    assert!(matches!(
        read(&[("TIPPEN_MAX_SOCKETS_PER_SITE", "0")]),
        Err(SettingsError::Zero { .. })
    ));
    assert!(matches!(
        read(&[("TIPPEN_SNAPSHOTS_PER_MINUTE", "lots")]),
        Err(SettingsError::NotANumber { .. })
    ));
}

#[test]
fn alert_rules_and_destinations_are_read_checked_and_kept_across_registrations() {
    let json = r#"[{"id":"a","publicKey":"pk_a","secretKey":"sk_a_0123456789abcdefghij",
        "alertRules":[{"id":"pricing","when":{"domains":["Acme.com"],"pages":[{"path":"/pricing"}]},"cooldownMinutes":30}],
        "alertDestinations":{"slackWebhookUrl":"http://127.0.0.1:9/slack","webhooks":[{"url":"https://crm.example/hook","secret":"whsec_0123456789abcdef"}]}}]"#;
    let s = sites(json).unwrap();
    let site = s.site("a").unwrap();
    assert_eq!(site.alert_rules.len(), 1);
    let rule = &site.alert_rules[0];
    assert_eq!(
        (rule.name.as_str(), rule.source),
        ("pricing", crate::alerts::RuleSource::Config)
    );
    assert_eq!(
        rule.when.domains,
        vec!["acme.com".to_owned()],
        "lower-cased"
    );
    assert_eq!(site.alert_destinations.webhooks.len(), 1);
    // Configuration is the operator's: a loopback Slack webhook is accepted there.
    assert!(site.alert_destinations.slack_webhook_url.is_some());
    assert!(!format!("{site:?}").contains("whsec_0123456789abcdef"));

    let bad = site_problem(
        r#"[{"id":"a","publicKey":"pk_a","secretKey":"sk_a_0123456789abcdefghij","alertRules":[{"id":"x","businessHours":{"timeZone":"Mars/Olympus"}}]}]"#,
    );
    assert!(
        matches!(&bad.1, SiteProblem::Alerts(m) if m.contains("IANA")),
        "{bad:?}"
    );
    let twice = site_problem(
        r#"[{"id":"a","publicKey":"pk_a","secretKey":"sk_a_0123456789abcdefghij","alertRules":[{"id":"x"},{"id":"x"}]}]"#,
    );
    assert!(
        matches!(&twice.1, SiteProblem::Alerts(m) if m.contains("used twice")),
        "{twice:?}"
    );
    assert!(matches!(
        sites(
            r#"[{"id":"a","publicKey":"pk_a","secretKey":"sk_a_0123456789abcdefghij","alertRules":[{"id":"x","colour":"red"}]}]"#
        ),
        Err(SettingsError::SitesJson { .. })
    ));

    // A rule made through the API survives the configuration being registered again; a
    // configured rule of the same id replaces it; destinations from the API stay while the
    // configuration names none.
    futures_util::FutureExt::now_or_never(async {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
        let tippen = Tippen::new(Arc::new(MemoryStore::new()), clock, Config::default());
        let plain = sites(r#"[{"id":"a","publicKey":"pk_a","secretKey":"sk_a_0123456789abcdefghij"}]"#)
            .unwrap()
            .sites;
        register_sites(&tippen, &plain).await.unwrap();
        let mut stored = tippen.store().site(&SiteId::from("a")).await.unwrap().unwrap();
        let mut api_rule: crate::alerts::AlertRule =
            serde_json::from_str(r#"{"id":"from-api","when":{"newCompany":true}}"#).unwrap();
        api_rule.source = crate::alerts::RuleSource::Api;
        stored.alert_rules.push(api_rule);
        stored.alert_destinations = s.site("a").unwrap().alert_destinations.clone();
        tippen.put_site(&stored).await.unwrap();
        assert_eq!(register_sites(&tippen, &plain).await.unwrap(), 0, "nothing to change");
        let kept = tippen.store().site(&SiteId::from("a")).await.unwrap().unwrap();
        assert_eq!(kept.alert_rules.len(), 1);
        assert_eq!(kept.alert_rules[0].id, "from-api");
        assert_eq!(kept.alert_destinations.webhooks.len(), 1);
        let configured = sites(
            r#"[{"id":"a","publicKey":"pk_a","secretKey":"sk_a_0123456789abcdefghij","alertRules":[{"id":"from-api"},{"id":"other"}]}]"#,
        )
        .unwrap()
        .sites;
        register_sites(&tippen, &configured).await.unwrap();
        let replaced = tippen.store().site(&SiteId::from("a")).await.unwrap().unwrap();
        let ids: Vec<_> = replaced.alert_rules.iter().map(|r| (r.id.as_str(), r.source)).collect();
        assert_eq!(
            ids,
            [("from-api", crate::alerts::RuleSource::Config), ("other", crate::alerts::RuleSource::Config)]
        );
    })
    .unwrap();
}
