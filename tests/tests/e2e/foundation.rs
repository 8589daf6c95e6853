//! The test bed and the client factory against the emulator.

use orgwatch_tests::{Emulator, MANAGEMENT_ACCOUNT};
use shared::aws::AwsError;

#[tokio::test]
async fn member_accounts_are_isolated_through_assumed_roles() {
    let emu = Emulator::start().expect("emulator");
    let org = emu.create_org(3).await.expect("organisation");
    assert_eq!(org.management, MANAGEMENT_ACCOUNT);
    assert_eq!(org.members.len(), 3);
    let factory = emu.factory().await.expect("factory");
    assert_eq!(
        factory.home_account().await.expect("home"),
        MANAGEMENT_ACCOUNT
    );

    // One log group and one queue in each member, created with that member's credentials.
    for id in &org.members {
        let c = factory.for_account(id).await.expect("assume member role");
        assert_eq!(c.account(), Some(id.as_str()));
        c.logs()
            .create_log_group()
            .log_group_name(format!("/orgwatch/isolation/{id}"))
            .send()
            .await
            .expect("create log group");
        c.sqs()
            .create_queue()
            .queue_name(format!("isolation-{id}"))
            .send()
            .await
            .expect("create queue");
    }

    // Each account sees exactly its own resources; the management account sees none.
    let mut views = Vec::new();
    for id in org.members.iter().chain([&org.management]) {
        let c = factory.for_account(id).await.expect("clients");
        let groups: Vec<String> = c
            .logs()
            .describe_log_groups()
            .log_group_name_prefix("/orgwatch/isolation/")
            .send()
            .await
            .expect("describe log groups")
            .log_groups
            .unwrap_or_default()
            .into_iter()
            .filter_map(|g| g.log_group_name)
            .collect();
        let queues = c
            .sqs()
            .list_queues()
            .queue_name_prefix("isolation-")
            .send()
            .await
            .expect("list queues")
            .queue_urls
            .unwrap_or_default();
        views.push((id.clone(), groups, queues));
    }
    for (id, groups, queues) in &views {
        if *id == org.management {
            assert!(groups.is_empty(), "management sees {groups:?}");
            assert!(queues.is_empty(), "management sees {queues:?}");
        } else {
            assert_eq!(groups, &vec![format!("/orgwatch/isolation/{id}")]);
            assert_eq!(queues.len(), 1, "{id} sees {queues:?}");
            assert!(queues[0].contains(id.as_str()), "{id} sees {queues:?}");
        }
    }

    // Every call above went through the factory and was counted.
    let calls = factory.calls();
    assert!(calls.total() >= 3 * 2 + 4 * 2, "counted {}", calls.total());
    assert_eq!(calls.writes(), 6, "{:?}", calls.snapshot());
}

#[tokio::test]
async fn a_malformed_account_id_is_refused_before_any_call() {
    let emu = Emulator::start().expect("emulator");
    let factory = emu.factory().await.expect("factory");
    let err = factory.for_account("12345").await.expect_err("must refuse");
    assert!(
        matches!(err, AwsError::InvalidAccountId(ref id) if id == "12345"),
        "{err}"
    );
    assert_eq!(factory.calls().total(), 0);
}

#[tokio::test]
async fn s3_works_path_style_against_the_emulator() {
    let emu = Emulator::start().expect("emulator");
    let factory = emu.factory().await.expect("factory");
    let s3 = factory.home().s3();
    s3.create_bucket()
        .bucket("orgwatch-path-style-test")
        .send()
        .await
        .expect("create bucket");
    s3.put_object()
        .bucket("orgwatch-path-style-test")
        .key("AWSLogs/o-test/x.json")
        .body(b"{}".to_vec().into())
        .send()
        .await
        .expect("put object");
    let listed = s3
        .list_objects_v2()
        .bucket("orgwatch-path-style-test")
        .send()
        .await
        .expect("list");
    assert_eq!(listed.key_count, Some(1));
}
