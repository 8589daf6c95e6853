//! Carries out exactly a plan's changes, one at a time, in plan order. Updates write only
//! what differs where the API allows it (bucket settings, trail logging).

use aws_sdk_cloudwatch::types::{ComparisonOperator, Statistic};
use shared::aws::Clients;
use shared::naming;

use crate::diff::{Action, Change};
use crate::model::*;
use crate::observe::{self, OpError};

macro_rules! call {
    ($op:literal, $fut:expr) => {
        $fut.await.map_err(|e| OpError::new($op, e))
    };
}

/// orgwatch's managed tags ([`naming::managed_tags`]) as one service's own `Tag` type
/// (every SDK crate has its own), for the request `$op`.
macro_rules! managed_tags {
    ($tag:ty, $op:literal) => {
        naming::managed_tags()
            .iter()
            .map(|(k, v)| <$tag>::builder().key(*k).value(*v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| OpError::build($op, e))
    };
}

/// Tolerates "already gone" on delete and "already there" on create, so that a retried
/// or interrupted apply converges.
fn ignore(r: Result<(), OpError>, codes: &[&str]) -> Result<(), OpError> {
    match r {
        Err(e) if e.is(codes) => Ok(()),
        other => other,
    }
}

fn wrong_spec(change: &Change) -> OpError {
    OpError::build(
        "plan",
        format!("internal: {} has settings of another kind", change.key),
    )
}

/// Applies one change with clients of the change's account and region.
pub async fn apply(c: &Clients, change: &Change, options: &ApplyOptions) -> Result<(), OpError> {
    let key = &change.key;
    let name = key.name.as_str();
    match (&change.action, &change.desired) {
        (Action::Delete, _) => delete(c, change, options).await,
        (Action::Adopt, _) => adopt(c, change).await,
        (action, Some(spec)) => {
            let update = matches!(action, Action::Update { .. });
            match (key.kind, spec) {
                (Kind::LogGroup, Spec::LogGroup(s)) => log_group(c, name, s, update).await,
                (Kind::LogPolicy, Spec::Policy(s)) => {
                    call!(
                        "PutResourcePolicy",
                        c.logs()
                            .put_resource_policy()
                            .policy_name(name)
                            .policy_document(&s.policy)
                            .send()
                    )?;
                    Ok(())
                }
                (Kind::MetricFilter, Spec::MetricFilter(s)) => {
                    metric_filter(c, name, s, update).await
                }
                (Kind::Alarm, Spec::Alarm(s)) => alarm(c, name, s).await,
                (
                    Kind::EventsRule | Kind::ForwardRule | Kind::BusRule | Kind::OrgEventsRule,
                    Spec::EventRule(s),
                ) => event_rule(c, name, s, change.observed.as_ref()).await,
                (Kind::LeaseTable, Spec::Table(s)) => table(c, name, s, update).await,
                (Kind::RuleManifest, Spec::Object(s)) => object(c, name, s).await,
                (Kind::Scp, Spec::Scp(s)) => scp(c, name, s, change).await,
                (Kind::Bus, Spec::Policy(s)) => bus(c, name, s, update).await,
                (Kind::Topic, Spec::Policy(s)) => topic(c, name, s, update).await,
                (Kind::Queue | Kind::DeadLetterQueue, Spec::Queue(s)) => {
                    queue(c, name, s, update).await
                }
                (Kind::Subscription, Spec::Subscription(s)) => subscription(c, s, update).await,
                // The member stack's roles: the plan is refused before apply
                // (diff::provided_changes); reaching here is a bug, not a write.
                (Kind::TrailRole | Kind::ForwardRole, _) => Err(OpError::build(
                    "plan",
                    format!("internal: {} is never written by the hub", change.key),
                )),
                (Kind::OrgTrail | Kind::MemberTrail, Spec::Trail(s)) => {
                    trail(c, name, s, change).await
                }
                (Kind::Bucket, Spec::Bucket(s)) => bucket(c, name, s, change).await,
                (Kind::TrustedAccess, Spec::ServiceAccess(s)) => {
                    // Organizations API reference, EnableAWSServiceAccess: called from the
                    // management account; CloudTrail then creates its service-linked role.
                    call!(
                        "EnableAWSServiceAccess",
                        c.organizations()
                            .enable_aws_service_access()
                            .service_principal(&s.service_principal)
                            .send()
                    )?;
                    Ok(())
                }
                _ => Err(wrong_spec(change)),
            }
        }
        (_, None) => Err(wrong_spec(change)),
    }
}

/// Choices that only matter to some applies.
#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    /// Delete the archive bucket (and every object version in it) on offboard.
    pub delete_archive: bool,
    /// Adopt resources that have orgwatch names but not the managed tag (plan/enroll).
    pub adopt: bool,
    /// Read every EventBridge rule's targets (`--deep`; see `observe::event_rules`).
    pub deep: bool,
}

/// Tags an existing resource as orgwatch's (`--adopt`). Kinds without tags of their own
/// (metric filters, subscriptions, log policies) are never adopted: they follow their
/// parent. Each write adds the managed tag and leaves the resource's other tags alone.
async fn adopt(c: &Clients, change: &Change) -> Result<(), OpError> {
    let key = &change.key;
    let (region, account, name) = (key.region.as_str(), key.account.as_str(), key.name.as_str());
    let (k, v) = (naming::MANAGED_TAG, naming::MANAGED_TAG_VALUE);
    match key.kind {
        Kind::LogGroup => {
            call!(
                "TagResource",
                c.logs()
                    .tag_resource()
                    .resource_arn(naming::arn::log_group(region, account, name))
                    .tags(k, v)
                    .send()
            )?;
        }
        Kind::Alarm => {
            let tag = aws_sdk_cloudwatch::types::Tag::builder()
                .key(k)
                .value(v)
                .build();
            call!(
                "TagResource",
                c.cloudwatch()
                    .tag_resource()
                    .resource_arn(naming::arn::alarm(region, account, name))
                    .tags(tag)
                    .send()
            )?;
        }
        Kind::EventsRule | Kind::ForwardRule | Kind::BusRule | Kind::OrgEventsRule | Kind::Bus => {
            let arn = match (&change.observed, key.kind) {
                (_, Kind::Bus) => naming::arn::bus(region, account, name),
                (Some(Spec::EventRule(r)), _) => naming::arn::rule(region, account, &r.bus, name),
                _ => naming::arn::rule(region, account, "default", name),
            };
            let tag = aws_sdk_eventbridge::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| OpError::build("TagResource", e))?;
            call!(
                "TagResource",
                c.eventbridge()
                    .tag_resource()
                    .resource_arn(arn)
                    .tags(tag)
                    .send()
            )?;
        }
        Kind::Topic => {
            let tag = aws_sdk_sns::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| OpError::build("TagResource", e))?;
            call!(
                "TagResource",
                c.sns()
                    .tag_resource()
                    .resource_arn(naming::arn::topic(region, account, name))
                    .tags(tag)
                    .send()
            )?;
        }
        Kind::Queue | Kind::DeadLetterQueue => {
            if let Some((url, _)) = observe::queue(c, name).await? {
                call!(
                    "TagQueue",
                    c.sqs().tag_queue().queue_url(url).tags(k, v).send()
                )?;
            }
        }
        Kind::Bucket => {
            // PutBucketTagging replaces the whole set: keep what is there.
            use aws_sdk_s3::types::{Tag, Tagging};
            let mut tags: Vec<Tag> = observe::bucket_tags(c, name)
                .await?
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t.key() != k)
                .collect();
            tags.push(
                Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .map_err(|e| OpError::build("PutBucketTagging", e))?,
            );
            let tagging = Tagging::builder()
                .set_tag_set(Some(tags))
                .build()
                .map_err(|e| OpError::build("PutBucketTagging", e))?;
            call!(
                "PutBucketTagging",
                c.s3()
                    .put_bucket_tagging()
                    .bucket(name)
                    .tagging(tagging)
                    .send()
            )?;
        }
        Kind::OrgTrail | Kind::MemberTrail => {
            let tag = aws_sdk_cloudtrail::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| OpError::build("AddTags", e))?;
            call!(
                "AddTags",
                c.cloudtrail()
                    .add_tags()
                    .resource_id(naming::arn::trail(region, account, name))
                    .tags_list(tag)
                    .send()
            )?;
        }
        Kind::Scp => {
            if let Some(id) = observe::scp_id(c).await? {
                let tag = aws_sdk_organizations::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .map_err(|e| OpError::build("TagResource", e))?;
                call!(
                    "TagResource",
                    c.organizations()
                        .tag_resource()
                        .resource_id(id)
                        .tags(tag)
                        .send()
                )?;
            }
        }
        Kind::LeaseTable => {
            let tag = aws_sdk_dynamodb::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| OpError::build("TagResource", e))?;
            call!(
                "TagResource",
                c.dynamodb()
                    .tag_resource()
                    .resource_arn(naming::arn::table(region, account, name))
                    .tags(tag)
                    .send()
            )?;
        }
        // Provided roles are never written, so never tagged by the hub. The manifest is
        // recognised by its content (an orgwatch rule manifest at orgwatch's key).
        Kind::RuleManifest
        | Kind::MetricFilter
        | Kind::Subscription
        | Kind::LogPolicy
        | Kind::TrailRole
        | Kind::ForwardRole
        | Kind::TrustedAccess => {}
    }
    Ok(())
}

fn tags_logs() -> std::collections::HashMap<String, String> {
    naming::managed_tags()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn log_group(c: &Clients, name: &str, s: &LogGroupSpec, update: bool) -> Result<(), OpError> {
    let logs = c.logs();
    if !update {
        ignore(
            call!(
                "CreateLogGroup",
                logs.create_log_group()
                    .log_group_name(name)
                    .set_tags(Some(tags_logs()))
                    .send()
            )
            .map(|_| ()),
            &["ResourceAlreadyExistsException"],
        )?;
    }
    call!(
        "PutRetentionPolicy",
        logs.put_retention_policy()
            .log_group_name(name)
            .retention_in_days(s.retention_days)
            .send()
    )?;
    Ok(())
}

async fn metric_filter(
    c: &Clients,
    name: &str,
    s: &MetricFilterSpec,
    update: bool,
) -> Result<(), OpError> {
    let logs = c.logs();
    if update {
        // Replace by delete + put: AWS's put replaces in place, but the emulator appends a
        // duplicate; delete-then-put converges on both (the gap is one API round trip).
        ignore(
            call!(
                "DeleteMetricFilter",
                logs.delete_metric_filter()
                    .log_group_name(&s.log_group)
                    .filter_name(name)
                    .send()
            )
            .map(|_| ()),
            &["ResourceNotFoundException"],
        )?;
    }
    let t = aws_sdk_cloudwatchlogs::types::MetricTransformation::builder()
        .metric_name(&s.metric_name)
        .metric_namespace(&s.namespace)
        .metric_value(&s.value)
        .build()
        .map_err(|e| OpError::build("PutMetricFilter", e))?;
    call!(
        "PutMetricFilter",
        logs.put_metric_filter()
            .log_group_name(&s.log_group)
            .filter_name(name)
            .filter_pattern(&s.pattern)
            .metric_transformations(t)
            .send()
    )?;
    Ok(())
}

async fn alarm(c: &Clients, name: &str, s: &AlarmSpec) -> Result<(), OpError> {
    let tags: Vec<_> = naming::managed_tags()
        .iter()
        .map(|(k, v)| {
            aws_sdk_cloudwatch::types::Tag::builder()
                .key(*k)
                .value(*v)
                .build()
        })
        .collect();
    call!(
        "PutMetricAlarm",
        c.cloudwatch()
            .put_metric_alarm()
            .alarm_name(name)
            .alarm_description(&s.description)
            .metric_name(&s.metric_name)
            .namespace(&s.namespace)
            .statistic(Statistic::from(s.statistic.as_str()))
            .period(s.period)
            .evaluation_periods(s.evaluation_periods)
            .threshold(s.threshold)
            .comparison_operator(ComparisonOperator::from(s.comparison.as_str()))
            .set_alarm_actions(Some(s.actions.clone()))
            .set_ok_actions(Some(s.ok_actions.clone()))
            .treat_missing_data(&s.treat_missing_data)
            .set_dimensions(Some(
                s.dimensions
                    .iter()
                    .map(|(name, value)| {
                        aws_sdk_cloudwatch::types::Dimension::builder()
                            .name(name)
                            .value(value)
                            .build()
                    })
                    .collect(),
            ))
            .actions_enabled(true)
            .set_tags(Some(tags))
            .send()
    )?;
    Ok(())
}

/// PutRule, PutTargets of orgwatch's one target, then RemoveTargets of what else `observed`
/// found on the rule: someone else's targets, and orgwatch's target under an id it no longer
/// declares (PutTargets adds the targets it is given and updates those already associated
/// with the rule, by id, so a target of a new id goes beside the old one; EventBridge API
/// reference, PutTargets).
async fn event_rule(
    c: &Clients,
    name: &str,
    s: &EventRuleSpec,
    observed: Option<&Spec>,
) -> Result<(), OpError> {
    let eb = c.eventbridge();
    let tags = managed_tags!(aws_sdk_eventbridge::types::Tag, "PutRule")?;
    call!(
        "PutRule",
        eb.put_rule()
            .name(name)
            .event_bus_name(&s.bus)
            .event_pattern(&s.pattern)
            .state(aws_sdk_eventbridge::types::RuleState::from(
                s.state.as_str()
            ))
            .description("managed by orgwatch")
            .set_tags(Some(tags))
            .send()
    )?;
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id(&s.target_id)
        .arn(&s.target_arn)
        .set_role_arn(s.target_role_arn.clone())
        .build()
        .map_err(|e| OpError::build("PutTargets", e))?;
    let out = call!(
        "PutTargets",
        eb.put_targets()
            .rule(name)
            .event_bus_name(&s.bus)
            .targets(target)
            .send()
    )?;
    if out.failed_entry_count() > 0 {
        return Err(OpError::from_parts(
            "PutTargets",
            out.failed_entries().first().and_then(|f| f.error_code()),
            &format!("target {} of rule {name} was refused", s.target_arn),
        ));
    }
    let Some(Spec::EventRule(o)) = observed else {
        return Ok(());
    };
    let mut stale: Vec<String> = o.other_targets.iter().map(|t| t.id.clone()).collect();
    if !o.target_id.is_empty() && o.target_id != s.target_id {
        stale.push(o.target_id.clone());
    }
    if stale.is_empty() {
        return Ok(());
    }
    let out = call!(
        "RemoveTargets",
        eb.remove_targets()
            .rule(name)
            .event_bus_name(&s.bus)
            .set_ids(Some(stale))
            .send()
    )?;
    if out.failed_entry_count() > 0 {
        return Err(OpError::from_parts(
            "RemoveTargets",
            out.failed_entries().first().and_then(|f| f.error_code()),
            &format!("the targets orgwatch did not put on rule {name} could not be removed"),
        ));
    }
    Ok(())
}

/// The guardrail SCP: created (tagged) or its content updated, then attached to exactly the
/// declared targets. Attaching needs SCPs enabled on the root (Organizations API
/// reference, AttachPolicy: `PolicyTypeNotEnabledException`), which the hub does not do by
/// itself: enabling them attaches `FullAWSAccess` to every root, OU and account first, an
/// organisation-wide change for its owner to make.
async fn scp(c: &Clients, name: &str, s: &ScpSpec, change: &Change) -> Result<(), OpError> {
    use aws_sdk_organizations::types::PolicyType;
    let orgs = c.organizations();
    let (id, observed) = match &change.observed {
        Some(Spec::Scp(o)) => (observe::scp_id(c).await?, Some(o)),
        _ => (None, None),
    };
    let id = match id {
        Some(id) => {
            if observed.is_some_and(|o| o.content != s.content) {
                call!(
                    "UpdatePolicy",
                    orgs.update_policy()
                        .policy_id(&id)
                        .content(&s.content)
                        .send()
                )?;
            }
            id
        }
        None => {
            let tags = managed_tags!(aws_sdk_organizations::types::Tag, "CreatePolicy")?;
            let out = call!(
                "CreatePolicy",
                orgs.create_policy()
                    .name(name)
                    .description("orgwatch: deny changes to orgwatch's member resources")
                    .r#type(PolicyType::ServiceControlPolicy)
                    .content(&s.content)
                    .set_tags(Some(tags))
                    .send()
            )?;
            out.policy()
                .and_then(|p| p.policy_summary())
                .and_then(|p| p.id())
                .map(str::to_string)
                .ok_or_else(|| OpError::build("CreatePolicy", "no policy id in the answer"))?
        }
    };
    let attached: Vec<String> = observed.map(|o| o.targets.clone()).unwrap_or_default();
    for t in s.targets.iter().filter(|t| !attached.contains(t)) {
        let r = call!(
            "AttachPolicy",
            orgs.attach_policy().policy_id(&id).target_id(t).send()
        );
        match r {
            Ok(_) => {}
            Err(e) if e.is(&["DuplicatePolicyAttachmentException"]) => {}
            Err(e) if e.is(&["PolicyTypeNotEnabledException"]) => {
                let message = format!(
                    "service control policies are not enabled on the root: run `aws organizations enable-policy-type --root-id <r-...> --policy-type SERVICE_CONTROL_POLICY` (it attaches FullAWSAccess everywhere first), then hub enroll again ({})",
                    e.message()
                );
                return Err(e.with_message(message));
            }
            Err(e) => return Err(e),
        }
    }
    for t in attached.iter().filter(|t| !s.targets.contains(t)) {
        ignore(
            call!(
                "DetachPolicy",
                orgs.detach_policy().policy_id(&id).target_id(t).send()
            )
            .map(|_| ()),
            &["PolicyNotAttachedException"],
        )?;
    }
    Ok(())
}

/// An object the hub writes in the central bucket (the rule manifest). S3 API reference,
/// PutObject: the object is replaced whole. It is encrypted with S3-managed keys whatever the
/// bucket's default, so the agent reads it with s3:GetObject alone (an SSE-KMS object would
/// also need kms:Decrypt in the key policy; the manifest holds no secret): S3 user guide,
/// "Specifying server-side encryption with Amazon S3 managed keys (SSE-S3)".
async fn object(c: &Clients, key: &str, s: &ObjectSpec) -> Result<(), OpError> {
    call!(
        "PutObject",
        c.s3()
            .put_object()
            .bucket(&s.bucket)
            .key(key)
            .content_type("application/json")
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256)
            .body(aws_sdk_s3::primitives::ByteStream::from(
                s.body.clone().into_bytes()
            ))
            .send()
    )?;
    Ok(())
}

/// Deletes alarms, at most 100 names per DeleteAlarms call (CloudWatch API reference,
/// DeleteAlarms: "AlarmNames ... Maximum number of 100 items"; deleting an alarm that does
/// not exist is not an error).
pub async fn delete_alarms(c: &Clients, names: &[String]) -> Result<(), OpError> {
    for chunk in names.chunks(100) {
        call!(
            "DeleteAlarms",
            c.cloudwatch()
                .delete_alarms()
                .set_alarm_names(Some(chunk.to_vec()))
                .send()
        )?;
    }
    Ok(())
}

/// The lease table of `hub watch`: on-demand, one string partition key, tagged. Its key
/// cannot change in place (DynamoDB API reference, UpdateTable: key schema is not
/// updatable), so an update only sets the billing mode.
async fn table(c: &Clients, name: &str, s: &TableSpec, update: bool) -> Result<(), OpError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let ddb = c.dynamodb();
    let billing = BillingMode::from(s.billing_mode.as_str());
    if update {
        call!(
            "UpdateTable",
            ddb.update_table()
                .table_name(name)
                .billing_mode(billing)
                .send()
        )?;
        return Ok(());
    }
    let tags = managed_tags!(aws_sdk_dynamodb::types::Tag, "CreateTable")?;
    let key = KeySchemaElement::builder()
        .attribute_name(&s.partition_key)
        .key_type(KeyType::Hash)
        .build()
        .map_err(|e| OpError::build("CreateTable", e))?;
    let attribute = AttributeDefinition::builder()
        .attribute_name(&s.partition_key)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| OpError::build("CreateTable", e))?;
    ignore(
        call!(
            "CreateTable",
            ddb.create_table()
                .table_name(name)
                .key_schema(key)
                .attribute_definitions(attribute)
                .billing_mode(billing)
                .set_tags(Some(tags))
                .send()
        )
        .map(|_| ()),
        &["ResourceInUseException"],
    )
}

async fn bus(c: &Clients, name: &str, s: &PolicySpec, update: bool) -> Result<(), OpError> {
    let eb = c.eventbridge();
    if !update {
        let tags = managed_tags!(aws_sdk_eventbridge::types::Tag, "CreateEventBus")?;
        ignore(
            call!(
                "CreateEventBus",
                eb.create_event_bus().name(name).set_tags(Some(tags)).send()
            )
            .map(|_| ()),
            &["ResourceAlreadyExistsException"],
        )?;
    }
    call!(
        "PutPermission",
        eb.put_permission()
            .event_bus_name(name)
            .policy(&s.policy)
            .send()
    )?;
    Ok(())
}

async fn topic(c: &Clients, name: &str, s: &PolicySpec, update: bool) -> Result<(), OpError> {
    let sns = c.sns();
    if !update {
        // The access policy is an attribute CreateTopic takes (SNS API reference,
        // CreateTopic: Attributes, Policy), as are the tags: one call for a new topic.
        let tags = managed_tags!(aws_sdk_sns::types::Tag, "CreateTopic")?;
        call!(
            "CreateTopic",
            sns.create_topic()
                .name(name)
                .attributes("Policy", &s.policy)
                .set_tags(Some(tags))
                .send()
        )?;
        return Ok(());
    }
    let arn = naming::arn::topic(&c.region(), c.account().unwrap_or_default(), name);
    call!(
        "SetTopicAttributes",
        sns.set_topic_attributes()
            .topic_arn(&arn)
            .attribute_name("Policy")
            .attribute_value(&s.policy)
            .send()
    )?;
    Ok(())
}

fn queue_attributes(
    s: &QueueSpec,
) -> std::collections::HashMap<aws_sdk_sqs::types::QueueAttributeName, String> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let mut m = std::collections::HashMap::new();
    if !s.policy.is_empty() {
        m.insert(A::Policy, s.policy.clone());
    }
    if !s.redrive.is_empty() {
        m.insert(A::RedrivePolicy, s.redrive.clone());
    }
    m.insert(A::SqsManagedSseEnabled, s.sse.to_string());
    m.insert(A::MessageRetentionPeriod, s.retention_secs.to_string());
    m
}

async fn queue(c: &Clients, name: &str, s: &QueueSpec, update: bool) -> Result<(), OpError> {
    let sqs = c.sqs();
    if update {
        let url = observe::queue(c, name)
            .await?
            .map(|q| q.0)
            .unwrap_or_default();
        call!(
            "SetQueueAttributes",
            sqs.set_queue_attributes()
                .queue_url(url)
                .set_attributes(Some(queue_attributes(s)))
                .send()
        )?;
    } else {
        let tags = naming::managed_tags()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        call!(
            "CreateQueue",
            sqs.create_queue()
                .queue_name(name)
                .set_attributes(Some(queue_attributes(s)))
                .set_tags(Some(tags))
                .send()
        )?;
    }
    Ok(())
}

async fn subscription(c: &Clients, s: &SubscriptionSpec, update: bool) -> Result<(), OpError> {
    let sns = c.sns();
    if update {
        if let Some((_, arn)) = observe::subscription(c, &s.topic_arn, &s.queue_arn).await? {
            call!(
                "SetSubscriptionAttributes",
                sns.set_subscription_attributes()
                    .subscription_arn(arn)
                    .attribute_name("RawMessageDelivery")
                    .attribute_value(s.raw_delivery.to_string())
                    .send()
            )?;
        }
        return Ok(());
    }
    call!(
        "Subscribe",
        sns.subscribe()
            .topic_arn(&s.topic_arn)
            .protocol("sqs")
            .endpoint(&s.queue_arn)
            .attributes("RawMessageDelivery", s.raw_delivery.to_string())
            .return_subscription_arn(true)
            .send()
    )?;
    Ok(())
}

fn changed(change: &Change, field: &str) -> bool {
    match &change.action {
        Action::Update { fields } => fields.iter().any(|f| f.field == field),
        _ => true,
    }
}

/// CloudTrail's answers while a role or log group it was just given is not yet visible to
/// it. IAM is eventually consistent ("Changes that I make are not always immediately
/// visible", IAM user guide, Troubleshooting IAM); CloudTrail validates the CloudWatch Logs
/// role and group when the trail is created or updated (CreateTrail API reference, Errors),
/// and the member stack may have made the role moments before. Terraform's AWS provider
/// retries exactly these codes on CreateTrail/UpdateTrail.
const TRAIL_PROPAGATION: &[&str] = &[
    "InvalidCloudWatchLogsRoleArnException",
    "InvalidCloudWatchLogsLogGroupArnException",
];

/// How a propagation race is waited out: waits from `first` doubling to `max`, for at most
/// `bound` in all, before the error is reported.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    first: std::time::Duration,
    max: std::time::Duration,
    bound: std::time::Duration,
}

/// About a minute, as IAM changes usually propagate within seconds.
const PROPAGATION: Backoff = Backoff {
    first: std::time::Duration::from_secs(1),
    max: std::time::Duration::from_secs(8),
    bound: std::time::Duration::from_secs(60),
};

/// Runs `op` again while it fails with one of `codes`, waiting as `backoff` says; each wait
/// is logged.
async fn propagation_retry<F, Fut>(
    operation: &str,
    codes: &[&str],
    backoff: Backoff,
    mut op: F,
) -> Result<(), OpError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), OpError>>,
{
    let started = tokio::time::Instant::now();
    let mut wait = backoff.first;
    loop {
        match op().await {
            Err(e) if e.is(codes) && started.elapsed() + wait <= backoff.bound => {
                tracing::warn!(
                    operation,
                    code = e.code().unwrap_or_default(),
                    retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "waiting for IAM to propagate (eventually consistent) before retrying"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(backoff.max);
            }
            other => return other,
        }
    }
}

async fn trail(c: &Clients, name: &str, s: &TrailSpec, change: &Change) -> Result<(), OpError> {
    let ct = c.cloudtrail();
    let config_changed = [
        "bucket",
        "multi_region",
        "global_service_events",
        "log_file_validation",
        "organization",
        "log_group_arn",
        "logs_role_arn",
    ]
    .iter()
    .any(|f| changed(change, f));
    let kms_changed = changed(change, "kms_key_id");
    if matches!(change.action, Action::Create) {
        let tags = managed_tags!(aws_sdk_cloudtrail::types::Tag, "CreateTrail")?;
        propagation_retry("CreateTrail", TRAIL_PROPAGATION, PROPAGATION, || async {
            call!(
                "CreateTrail",
                ct.create_trail()
                    .name(name)
                    .s3_bucket_name(&s.bucket)
                    .is_multi_region_trail(s.multi_region)
                    .include_global_service_events(s.global_service_events)
                    .enable_log_file_validation(s.log_file_validation)
                    .is_organization_trail(s.organization)
                    .set_cloud_watch_logs_log_group_arn(s.log_group_arn.clone())
                    .set_cloud_watch_logs_role_arn(s.logs_role_arn.clone())
                    .set_kms_key_id(s.kms_key_id.clone())
                    .set_tags_list(Some(tags.clone()))
                    .send()
            )
            .map(|_| ())
        })
        .await?;
    } else if config_changed || kms_changed {
        propagation_retry("UpdateTrail", TRAIL_PROPAGATION, PROPAGATION, || async {
            call!(
                "UpdateTrail",
                ct.update_trail()
                    .name(name)
                    .s3_bucket_name(&s.bucket)
                    .is_multi_region_trail(s.multi_region)
                    .include_global_service_events(s.global_service_events)
                    .enable_log_file_validation(s.log_file_validation)
                    .is_organization_trail(s.organization)
                    .set_cloud_watch_logs_log_group_arn(s.log_group_arn.clone())
                    .set_cloud_watch_logs_role_arn(s.logs_role_arn.clone())
                    // When the key changed to none, an empty KmsKeyId stops SSE-KMS
                    // (CloudTrail user guide, "Update a trail to use your KMS key": the
                    // CLI's `--kms-key-id ""`); otherwise the desired key or nothing.
                    .set_kms_key_id(match (&s.kms_key_id, kms_changed) {
                        (None, true) => Some(String::new()),
                        (key, _) => key.clone(),
                    })
                    .send()
            )
            .map(|_| ())
        })
        .await?;
    }
    if changed(change, "logging") {
        if s.logging {
            call!("StartLogging", ct.start_logging().name(name).send())?;
        } else {
            call!("StopLogging", ct.stop_logging().name(name).send())?;
        }
    }
    Ok(())
}

async fn bucket(c: &Clients, name: &str, s: &BucketSpec, change: &Change) -> Result<(), OpError> {
    use aws_sdk_s3::types::*;
    let s3 = c.s3();
    if matches!(change.action, Action::Create) {
        let region = c.region();
        let mut req = s3
            .create_bucket()
            .bucket(name)
            .object_ownership(ObjectOwnership::from(s.ownership.as_str()));
        if region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        call!("CreateBucket", req.send())?;
        let tags = managed_tags!(Tag, "PutBucketTagging")?;
        let tagging = Tagging::builder()
            .set_tag_set(Some(tags))
            .build()
            .map_err(|e| OpError::build("PutBucketTagging", e))?;
        call!(
            "PutBucketTagging",
            s3.put_bucket_tagging().bucket(name).tagging(tagging).send()
        )?;
    }
    if [
        "block_public_acls",
        "ignore_public_acls",
        "block_public_policy",
        "restrict_public_buckets",
    ]
    .iter()
    .any(|f| changed(change, f))
    {
        let conf = PublicAccessBlockConfiguration::builder()
            .block_public_acls(s.block_public_acls)
            .ignore_public_acls(s.ignore_public_acls)
            .block_public_policy(s.block_public_policy)
            .restrict_public_buckets(s.restrict_public_buckets)
            .build();
        call!(
            "PutPublicAccessBlock",
            s3.put_public_access_block()
                .bucket(name)
                .public_access_block_configuration(conf)
                .send()
        )?;
    }
    if changed(change, "ownership") && !matches!(change.action, Action::Create) {
        let rule = OwnershipControlsRule::builder()
            .object_ownership(ObjectOwnership::from(s.ownership.as_str()))
            .build()
            .map_err(|e| OpError::build("PutBucketOwnershipControls", e))?;
        let controls = OwnershipControls::builder()
            .rules(rule)
            .build()
            .map_err(|e| OpError::build("PutBucketOwnershipControls", e))?;
        call!(
            "PutBucketOwnershipControls",
            s3.put_bucket_ownership_controls()
                .bucket(name)
                .ownership_controls(controls)
                .send()
        )?;
    }
    if changed(change, "encryption") {
        let mut by_default = ServerSideEncryptionByDefault::builder();
        by_default = match s.encryption.strip_prefix("aws:kms:") {
            Some(key) => by_default
                .sse_algorithm(ServerSideEncryption::AwsKms)
                .kms_master_key_id(key),
            None => by_default.sse_algorithm(ServerSideEncryption::Aes256),
        };
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(
                by_default
                    .build()
                    .map_err(|e| OpError::build("PutBucketEncryption", e))?,
            )
            .bucket_key_enabled(true)
            .build();
        let conf = ServerSideEncryptionConfiguration::builder()
            .rules(rule)
            .build()
            .map_err(|e| OpError::build("PutBucketEncryption", e))?;
        call!(
            "PutBucketEncryption",
            s3.put_bucket_encryption()
                .bucket(name)
                .server_side_encryption_configuration(conf)
                .send()
        )?;
    }
    if changed(change, "versioning") {
        let conf = VersioningConfiguration::builder()
            .status(BucketVersioningStatus::from(s.versioning.as_str()))
            .build();
        call!(
            "PutBucketVersioning",
            s3.put_bucket_versioning()
                .bucket(name)
                .versioning_configuration(conf)
                .send()
        )?;
    }
    if changed(change, "expire_days") {
        let days = i32::try_from(s.expire_days).unwrap_or(i32::MAX);
        let rule = LifecycleRule::builder()
            .id(naming::PREFIX)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("AWSLogs/").build())
            .expiration(LifecycleExpiration::builder().days(days).build())
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(days)
                    .build(),
            )
            .build()
            .map_err(|e| OpError::build("PutBucketLifecycleConfiguration", e))?;
        let conf = BucketLifecycleConfiguration::builder()
            .rules(rule)
            .build()
            .map_err(|e| OpError::build("PutBucketLifecycleConfiguration", e))?;
        call!(
            "PutBucketLifecycleConfiguration",
            s3.put_bucket_lifecycle_configuration()
                .bucket(name)
                .lifecycle_configuration(conf)
                .send()
        )?;
    }
    if changed(change, "policy") {
        call!(
            "PutBucketPolicy",
            s3.put_bucket_policy().bucket(name).policy(&s.policy).send()
        )?;
    }
    Ok(())
}

async fn delete(c: &Clients, change: &Change, options: &ApplyOptions) -> Result<(), OpError> {
    let key = &change.key;
    let name = key.name.as_str();
    const GONE: &[&str] = &[
        "ResourceNotFoundException",
        "NoSuchEntity",
        "NotFound",
        "TrailNotFoundException",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "NoSuchBucket",
    ];
    let r = match key.kind {
        // S3 API reference, DeleteObject: in a versioned bucket it adds a delete marker; the
        // earlier versions stay with the archive's lifecycle.
        Kind::RuleManifest => match &change.observed {
            Some(Spec::Object(o)) => call!(
                "DeleteObject",
                c.s3().delete_object().bucket(&o.bucket).key(name).send()
            )
            .map(|_| ()),
            _ => Ok(()),
        },
        Kind::LogGroup => call!(
            "DeleteLogGroup",
            c.logs().delete_log_group().log_group_name(name).send()
        )
        .map(|_| ()),
        Kind::LogPolicy => call!(
            "DeleteResourcePolicy",
            c.logs().delete_resource_policy().policy_name(name).send()
        )
        .map(|_| ()),
        Kind::MetricFilter => {
            let group = match &change.observed {
                Some(Spec::MetricFilter(f)) => f.log_group.clone(),
                _ => naming::LOG_GROUP.to_string(),
            };
            call!(
                "DeleteMetricFilter",
                c.logs()
                    .delete_metric_filter()
                    .log_group_name(group)
                    .filter_name(name)
                    .send()
            )
            .map(|_| ())
        }
        Kind::Alarm => call!(
            "DeleteAlarms",
            c.cloudwatch().delete_alarms().alarm_names(name).send()
        )
        .map(|_| ()),
        Kind::EventsRule | Kind::ForwardRule | Kind::BusRule | Kind::OrgEventsRule => {
            let bus = match &change.observed {
                Some(Spec::EventRule(r)) => r.bus.clone(),
                _ => "default".to_string(),
            };
            let eb = c.eventbridge();
            let targets = call!(
                "ListTargetsByRule",
                eb.list_targets_by_rule()
                    .rule(name)
                    .event_bus_name(&bus)
                    .send()
            )?;
            let ids: Vec<String> = targets
                .targets()
                .iter()
                .map(|t| t.id().to_string())
                .collect();
            if !ids.is_empty() {
                call!(
                    "RemoveTargets",
                    eb.remove_targets()
                        .rule(name)
                        .event_bus_name(&bus)
                        .set_ids(Some(ids))
                        .send()
                )?;
            }
            call!(
                "DeleteRule",
                eb.delete_rule().name(name).event_bus_name(&bus).send()
            )
            .map(|_| ())
        }
        Kind::Scp => match observe::scp_id(c).await? {
            Some(id) => {
                let observed = match &change.observed {
                    Some(Spec::Scp(s)) => s.targets.clone(),
                    _ => Vec::new(),
                };
                for t in observed {
                    ignore(
                        call!(
                            "DetachPolicy",
                            c.organizations()
                                .detach_policy()
                                .policy_id(&id)
                                .target_id(t)
                                .send()
                        )
                        .map(|_| ()),
                        &["PolicyNotAttachedException"],
                    )?;
                }
                call!(
                    "DeletePolicy",
                    c.organizations().delete_policy().policy_id(id).send()
                )
                .map(|_| ())
            }
            None => Ok(()),
        },
        Kind::LeaseTable => call!(
            "DeleteTable",
            c.dynamodb().delete_table().table_name(name).send()
        )
        .map(|_| ()),
        Kind::Bus => call!(
            "DeleteEventBus",
            c.eventbridge().delete_event_bus().name(name).send()
        )
        .map(|_| ()),
        Kind::Topic => {
            let arn = naming::arn::topic(&c.region(), c.account().unwrap_or_default(), name);
            call!("DeleteTopic", c.sns().delete_topic().topic_arn(arn).send()).map(|_| ())
        }
        Kind::Subscription => match &change.observed {
            Some(Spec::Subscription(s)) => {
                match observe::subscription(c, &s.topic_arn, &s.queue_arn).await? {
                    Some((_, arn)) => call!(
                        "Unsubscribe",
                        c.sns().unsubscribe().subscription_arn(arn).send()
                    )
                    .map(|_| ()),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        },
        Kind::Queue | Kind::DeadLetterQueue => match observe::queue(c, name).await? {
            Some((url, _)) => {
                call!("DeleteQueue", c.sqs().delete_queue().queue_url(url).send()).map(|_| ())
            }
            None => Ok(()),
        },
        // Provided roles are the member stack's (diff never plans their deletion).
        Kind::TrailRole | Kind::ForwardRole | Kind::TrustedAccess => Ok(()),
        Kind::OrgTrail | Kind::MemberTrail => call!(
            "DeleteTrail",
            c.cloudtrail().delete_trail().name(name).send()
        )
        .map(|_| ()),
        Kind::Bucket => {
            if options.delete_archive {
                empty_bucket(c, name).await?;
                call!("DeleteBucket", c.s3().delete_bucket().bucket(name).send()).map(|_| ())
            } else {
                Ok(())
            }
        }
    };
    ignore(r, GONE)
}

/// Deletes every object version and delete marker, page by page.
async fn empty_bucket(c: &Clients, bucket: &str) -> Result<(), OpError> {
    use aws_sdk_s3::types::{Delete, ObjectIdentifier};
    let s3 = c.s3();
    loop {
        let page = call!(
            "ListObjectVersions",
            s3.list_object_versions().bucket(bucket).send()
        )?;
        let mut ids = Vec::new();
        for v in page.versions() {
            if let Some(k) = v.key() {
                ids.push(
                    ObjectIdentifier::builder()
                        .key(k)
                        .set_version_id(v.version_id().map(str::to_string))
                        .build(),
                );
            }
        }
        for m in page.delete_markers() {
            if let Some(k) = m.key() {
                ids.push(
                    ObjectIdentifier::builder()
                        .key(k)
                        .set_version_id(m.version_id().map(str::to_string))
                        .build(),
                );
            }
        }
        let ids: Vec<_> = ids.into_iter().filter_map(Result::ok).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let del = Delete::builder()
            .set_objects(Some(ids))
            .quiet(true)
            .build()
            .map_err(|e| OpError::build("DeleteObjects", e))?;
        call!(
            "DeleteObjects",
            s3.delete_objects().bucket(bucket).delete(del).send()
        )?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn failure(code: &str) -> OpError {
        OpError::from_parts("CreateTrail", Some(code), "x")
    }

    const QUICK: Backoff = Backoff {
        first: Duration::from_millis(2),
        max: Duration::from_millis(8),
        bound: Duration::from_millis(200),
    };

    #[tokio::test]
    async fn propagation_races_are_retried_until_iam_catches_up() {
        let calls = AtomicUsize::new(0);
        let r = propagation_retry("CreateTrail", TRAIL_PROPAGATION, QUICK, || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(failure("InvalidCloudWatchLogsRoleArnException")),
                1 => Err(failure("InvalidCloudWatchLogsLogGroupArnException")),
                _ => Ok(()),
            }
        })
        .await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn other_errors_are_not_retried_and_races_are_bounded() {
        let calls = AtomicUsize::new(0);
        let r = propagation_retry("CreateTrail", TRAIL_PROPAGATION, QUICK, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(failure("AccessDeniedException"))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not a propagation race");

        let calls = AtomicUsize::new(0);
        let started = std::time::Instant::now();
        let r = propagation_retry("CreateTrail", TRAIL_PROPAGATION, QUICK, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(failure("InvalidCloudWatchLogsRoleArnException"))
        })
        .await;
        assert!(r.is_err_and(|e| e.is(TRAIL_PROPAGATION)));
        assert!(
            calls.load(Ordering::SeqCst) > 3,
            "retried while within the bound"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "gave up at the bound"
        );
    }
}
