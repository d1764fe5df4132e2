//! The EC2 Query API: signed form requests, XML answers, and the instance they describe.

use super::*;

/// An instance as DescribeInstances reports it (the fields cairn reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    /// `pending`, `running`, `shutting-down`, `terminated`, `stopping`, `stopped`.
    pub state: String,
    pub instance_type: String,
    pub image_id: String,
    pub availability_zone: Option<String>,
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    pub ipv6: Option<String>,
    pub key_name: Option<String>,
    pub subnet_id: Option<String>,
    pub vpc_id: Option<String>,
    pub security_group_ids: Vec<String>,
    pub tags: BTreeMap<String, String>,
    /// Why the instance changed state, when EC2 says (`Client.UserInitiatedShutdown`...).
    pub state_reason: Option<String>,
}

impl Instance {
    pub(super) fn is_live(&self) -> bool {
        LIVE_STATES.contains(&self.state.as_str())
    }

    pub(super) fn is_tagged_for(&self, host: &str) -> bool {
        ownership::claim(&self.tags, host) == Claim::ThisHost
    }
}

impl AwsProvider {
    /// Turns an API error into a provider error saying what cairn was doing; refused
    /// credentials name where they came from.
    pub(super) fn api_error(
        &self,
        host: &str,
        what: &str,
    ) -> impl FnOnce(HttpError) -> ProviderError {
        let host = host.to_owned();
        let what = format!("{what} (aws provider `{}`, region {})", self.name, self.region);
        let sources = self.sources.clone();
        move |source| {
            let help = match source.code() {
                Some(code) if AWS_AUTH_CODES.contains(&code) && code != "RequestExpired" => {
                    format!(
                        "check the access key: its id comes from {}, its secret from {}; both \
                         must belong to one active access key (the secret is shown only once, \
                         when the key is created: make a new access key in the IAM console if \
                         it is lost)",
                        sources.access_key_id, sources.secret_access_key
                    )
                }
                _ => source.help(),
            };
            ProviderError::Api { host, what, help, source: Box::new(source) }
        }
    }

    /// One EC2 action; the parsed XML answer is handed to `read`.
    pub(super) async fn call<T>(
        &self,
        host: &str,
        what: &str,
        form: Form,
        read: impl FnOnce(roxmltree::Node) -> Option<T>,
    ) -> Result<T, ProviderError> {
        let action = form.action.clone();
        let text =
            self.client.post_form("/", &form.pairs).await.map_err(self.api_error(host, what))?;
        let unreadable = |reason: &str| {
            self.api_error(host, what)(self.client.unreadable(&action, reason, &text))
        };
        let doc = roxmltree::Document::parse(&text).map_err(|_| unreadable("not XML"))?;
        read(doc.root_element())
            .ok_or_else(|| unreadable(&format!("no {action} result in the answer")))
    }

    /// Instances matching `filters` (name, values), following `nextToken`.
    pub(super) async fn describe(
        &self,
        host: &str,
        ids: &[&str],
        filters: &[(&str, Vec<String>)],
    ) -> Result<Vec<Instance>, ProviderError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        // A bound, in case an API keeps pointing at a next page.
        for _ in 0..1_000 {
            let mut form = Form::new("DescribeInstances");
            for (i, id) in ids.iter().enumerate() {
                form.set(format!("InstanceId.{}", i + 1), id);
            }
            form.filters(filters);
            if ids.is_empty() {
                // EC2's largest page; it refuses MaxResults next to instance ids.
                form.set("MaxResults", "1000");
            }
            if let Some(t) = &token {
                form.set("NextToken", t);
            }
            let (page, next) = self
                .call(host, "could not list instances", form, |root| {
                    let set = child(root, "reservationSet")?;
                    let instances: Vec<Instance> = items(set)
                        .filter_map(|r| child(r, "instancesSet"))
                        .flat_map(items)
                        .filter_map(parse_instance)
                        .collect();
                    Some((instances, text(root, "nextToken").map(str::to_owned)))
                })
                .await?;
            out.extend(page);
            match next {
                Some(n) if !n.is_empty() => token = Some(n),
                _ => break,
            }
        }
        Ok(out)
    }
}

/// The parameters of one EC2 Query API request, in order.
#[derive(Debug, Clone)]
pub(super) struct Form {
    action: String,
    pairs: Vec<(String, String)>,
}

impl Form {
    pub(super) fn new(action: &str) -> Self {
        Self {
            action: action.to_owned(),
            pairs: vec![
                ("Action".to_owned(), action.to_owned()),
                ("Version".to_owned(), API_VERSION.to_owned()),
            ],
        }
    }

    pub(super) fn set(&mut self, key: impl Into<String>, value: impl AsRef<str>) {
        self.pairs.push((key.into(), value.as_ref().to_owned()));
    }

    /// `Filter.N.Name` / `Filter.N.Value.M`.
    pub(super) fn filters(&mut self, filters: &[(&str, Vec<String>)]) {
        for (n, (name, values)) in filters.iter().enumerate() {
            self.set(format!("Filter.{}.Name", n + 1), name);
            for (m, value) in values.iter().enumerate() {
                self.set(format!("Filter.{}.Value.{}", n + 1, m + 1), value);
            }
        }
    }

    /// Tags applied on creation: `TagSpecification.1.ResourceType` / `.Tag.N.Key|Value`.
    pub(super) fn tags(&mut self, resource_type: &str, tags: &[(&str, &str)]) {
        self.set("TagSpecification.1.ResourceType", resource_type);
        for (n, (key, value)) in tags.iter().enumerate() {
            self.set(format!("TagSpecification.1.Tag.{}.Key", n + 1), key);
            self.set(format!("TagSpecification.1.Tag.{}.Value", n + 1), value);
        }
    }
}

// EC2's XML: elements are camelCase, lists are `<xxxSet><item>...</item></xxxSet>`.

pub(super) fn child<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|n| n.is_element() && n.tag_name().name() == name)
}

pub(super) fn text<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    child(node, name).and_then(|n| n.text()).map(str::trim).filter(|t| !t.is_empty())
}

pub(super) fn items<'a, 'i>(
    set: roxmltree::Node<'a, 'i>,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    set.children().filter(|n| n.is_element() && n.tag_name().name() == "item")
}

pub(super) fn parse_instance(node: roxmltree::Node) -> Option<Instance> {
    let owned = |name: &str| text(node, name).map(str::to_owned);
    let tags = child(node, "tagSet")
        .into_iter()
        .flat_map(items)
        .filter_map(|t| {
            Some((text(t, "key")?.to_owned(), text(t, "value").unwrap_or("").to_owned()))
        })
        .collect();
    let ipv6 = child(node, "networkInterfaceSet")
        .into_iter()
        .flat_map(items)
        .filter_map(|n| child(n, "ipv6AddressesSet"))
        .flat_map(items)
        .find_map(|a| text(a, "ipv6Address").map(str::to_owned))
        .or_else(|| owned("ipv6Address"));
    Some(Instance {
        id: owned("instanceId")?,
        state: text(child(node, "instanceState")?, "name")?.to_owned(),
        instance_type: owned("instanceType").unwrap_or_default(),
        image_id: owned("imageId").unwrap_or_default(),
        availability_zone: child(node, "placement")
            .and_then(|p| text(p, "availabilityZone"))
            .map(str::to_owned),
        public_ip: owned("ipAddress"),
        private_ip: owned("privateIpAddress"),
        ipv6,
        key_name: owned("keyName"),
        subnet_id: owned("subnetId"),
        vpc_id: owned("vpcId"),
        security_group_ids: child(node, "groupSet")
            .into_iter()
            .flat_map(items)
            .filter_map(|g| text(g, "groupId").map(str::to_owned))
            .collect(),
        tags,
        state_reason: child(node, "stateReason")
            .and_then(|r| text(r, "message").or_else(|| text(r, "code")))
            .map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_numbers_filters_and_tags_from_one() {
        let mut f = Form::new("DescribeInstances");
        f.filters(&[("tag:cairn-host", vec!["web1".into()]), ("a", vec!["x".into(), "y".into()])]);
        f.tags("instance", &[("Name", "web1"), ("managed-by", "cairn")]);
        let got: Vec<String> = f.pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            got,
            [
                "Action=DescribeInstances",
                "Version=2016-11-15",
                "Filter.1.Name=tag:cairn-host",
                "Filter.1.Value.1=web1",
                "Filter.2.Name=a",
                "Filter.2.Value.1=x",
                "Filter.2.Value.2=y",
                "TagSpecification.1.ResourceType=instance",
                "TagSpecification.1.Tag.1.Key=Name",
                "TagSpecification.1.Tag.1.Value=web1",
                "TagSpecification.1.Tag.2.Key=managed-by",
                "TagSpecification.1.Tag.2.Value=cairn",
            ]
        );
    }

    /// Abridged from the EC2 API reference's DescribeInstances example.
    const DESCRIBE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>8f7724cf-496f-496e-8fe3-example</requestId>
  <reservationSet>
    <item>
      <reservationId>r-1234567890abcdef0</reservationId>
      <instancesSet>
        <item>
          <instanceId>i-1234567890abcdef0</instanceId>
          <imageId>ami-bff32ccc</imageId>
          <instanceState><code>16</code><name>running</name></instanceState>
          <privateIpAddress>192.168.1.88</privateIpAddress>
          <ipAddress>54.194.252.215</ipAddress>
          <keyName>cairn-918f4ab78f16</keyName>
          <instanceType>t2.micro</instanceType>
          <placement><availabilityZone>eu-west-1c</availabilityZone></placement>
          <subnetId>subnet-56f5f633</subnetId>
          <vpcId>vpc-11112222</vpcId>
          <groupSet><item><groupId>sg-e4076980</groupId><groupName>cairn-ssh</groupName></item></groupSet>
          <tagSet>
            <item><key>Name</key><value>web1</value></item>
            <item><key>cairn-host</key><value>web1</value></item>
            <item><key>managed-by</key><value>cairn</value></item>
          </tagSet>
          <networkInterfaceSet><item><ipv6AddressesSet><item><ipv6Address>2001:db8:1234:1a00::123</ipv6Address></item></ipv6AddressesSet></item></networkInterfaceSet>
        </item>
      </instancesSet>
    </item>
  </reservationSet>
</DescribeInstancesResponse>"#;

    #[test]
    fn describe_instances_is_read() {
        let doc = roxmltree::Document::parse(DESCRIBE).unwrap();
        let set = child(doc.root_element(), "reservationSet").unwrap();
        let all: Vec<Instance> = items(set)
            .filter_map(|r| child(r, "instancesSet"))
            .flat_map(items)
            .filter_map(parse_instance)
            .collect();
        assert_eq!(all.len(), 1);
        let i = &all[0];
        assert_eq!(i.id, "i-1234567890abcdef0");
        assert_eq!(i.state, "running");
        assert_eq!(i.instance_type, "t2.micro");
        assert_eq!(i.image_id, "ami-bff32ccc");
        assert_eq!(i.availability_zone.as_deref(), Some("eu-west-1c"));
        assert_eq!(i.public_ip.as_deref(), Some("54.194.252.215"));
        assert_eq!(i.private_ip.as_deref(), Some("192.168.1.88"));
        assert_eq!(i.ipv6.as_deref(), Some("2001:db8:1234:1a00::123"));
        assert_eq!(i.security_group_ids, ["sg-e4076980"]);
        assert!(i.is_live() && i.is_tagged_for("web1") && !i.is_tagged_for("web2"));
    }
}
