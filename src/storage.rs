//! Where data lives: a local path, or an object-store URL (`s3://` and `s3a://`, `gs://`,
//! `az://` and `abfss://`, `file://`) and the `object_store` client that reaches it.
//!
//! Credentials and endpoints come from the environment (the `AWS_*`, `GOOGLE_*` and `AZURE_*`
//! variables `object_store`'s builders read) and from `--storage-option KEY=VALUE`, whose keys
//! are checked against what the builder accepts. Neither is ever shown: messages name a
//! location by its URL, and a URL with a password in it is refused. Failed requests (an
//! unreachable endpoint, HTTP 5xx, throttling) are retried with backoff by `object_store`, for
//! up to 5 minutes, before an error reaches the job.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::execution::object_store::ObjectStoreUrl;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use url::Url;

use crate::error::{Error, Result};

/// `--storage-option KEY=VALUE` pairs, for every object store the command opens.
pub type StorageOptions = Vec<(String, String)>;

/// A place: a local path, or a prefix in an object store.
#[derive(Clone)]
pub enum Location {
    Local(PathBuf),
    Remote(Remote),
}

/// A prefix ("folder") in an object store.
#[derive(Clone)]
pub struct Remote {
    pub store: Arc<dyn ObjectStore>,
    /// The prefix inside the store (no leading or trailing `/`).
    pub prefix: ObjectPath,
    /// The URL as given, without a trailing `/`, for messages and for DataFusion.
    pub url: String,
    /// The store's own URL (scheme and bucket), under which a DataFusion runtime finds it.
    pub store_url: ObjectStoreUrl,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.url)
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(path) => write!(f, "Local({})", path.display()),
            Location::Remote(remote) => remote.fmt(f),
        }
    }
}

/// Whether `text` names a URL (`scheme://...`) rather than a local path.
pub fn is_url(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, _)| {
        scheme.len() > 1
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

impl Location {
    /// Parses a command-line location: a URL is opened as an object store (a `file://` URL
    /// is a local path), anything else is a local path.
    pub fn parse(text: &str, what: &str, options: &StorageOptions) -> Result<Self> {
        if !is_url(text) {
            return Ok(Location::Local(PathBuf::from(text)));
        }
        let url = Url::parse(text)
            .map_err(|e| Error::Usage(format!("{what} {text} is not a valid URL: {e}")))?;
        if url.password().is_some() {
            return Err(Error::Usage(format!(
                "{what}: a URL must not hold a password (it would show in logs); give \
                 credentials in the environment or with --storage-option"
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::Usage(format!(
                "{what}: a URL must not carry a query or fragment (a SAS token would show in \
                 logs and the checkpoint); give it in the environment or with --storage-option"
            )));
        }
        if url.scheme() == "file" {
            let path = url
                .to_file_path()
                .map_err(|_| Error::Usage(format!("{what} {text}: not a local file URL")))?;
            return Ok(Location::Local(path));
        }
        Ok(Location::Remote(Remote::open(&url, text, what, options)?))
    }

    /// The location for messages.
    pub fn describe(&self) -> String {
        match self {
            Location::Local(path) => path.display().to_string(),
            Location::Remote(remote) => remote.url.clone(),
        }
    }

    pub fn as_local(&self) -> Option<&std::path::Path> {
        match self {
            Location::Local(path) => Some(path),
            Location::Remote(_) => None,
        }
    }
}

impl Remote {
    fn open(url: &Url, text: &str, what: &str, options: &StorageOptions) -> Result<Self> {
        use object_store::ObjectStoreScheme;
        let (scheme, path) = ObjectStoreScheme::parse(url).map_err(|e| {
            Error::Usage(format!(
                "{what} {text}: {e} (dfstream reads local paths, file://, s3://, gs:// and \
                 az:// URLs)"
            ))
        })?;
        let prefix =
            ObjectPath::parse(path).map_err(|e| Error::Usage(format!("{what} {text}: {e}")))?;
        let failed = |e: object_store::Error| {
            Error::Usage(format!(
                "{what} {text}: cannot set up the object store client: {}",
                without_secrets(&e.to_string(), options)
            ))
        };
        let unknown = |key: &str| {
            Error::Usage(format!(
                "--storage-option {key}: not a setting of the {scheme:?} object store client \
                 (see object_store's {scheme:?} configuration keys)"
            ))
        };
        let store: Arc<dyn ObjectStore> = match scheme {
            ObjectStoreScheme::AmazonS3 => {
                use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
                let builder = AmazonS3Builder::from_env().with_url(url.as_str());
                let builder = configured(
                    builder.with_retry(retry()),
                    options,
                    |b, key: AmazonS3ConfigKey, value| b.with_config(key, value),
                    unknown,
                )?;
                Arc::new(builder.build().map_err(failed)?)
            }
            ObjectStoreScheme::GoogleCloudStorage => {
                use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
                let builder = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
                let builder = configured(
                    builder.with_retry(retry()),
                    options,
                    |b, key: GoogleConfigKey, value| b.with_config(key, value),
                    unknown,
                )?;
                Arc::new(builder.build().map_err(failed)?)
            }
            ObjectStoreScheme::MicrosoftAzure => {
                use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
                let builder = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
                let builder = configured(
                    builder.with_retry(retry()),
                    options,
                    |b, key: AzureConfigKey, value| b.with_config(key, value),
                    unknown,
                )?;
                Arc::new(builder.build().map_err(failed)?)
            }
            other => {
                return Err(Error::Usage(format!(
                    "{what} {text}: {other:?} URLs are not supported (dfstream reads local \
                     paths, file://, s3://, gs:// and az:// URLs)"
                )));
            }
        };
        let store_url = ObjectStoreUrl::parse(&url[..url::Position::BeforePath])
            .map_err(|e| Error::Usage(format!("{what} {text}: {e}")))?;
        Ok(Remote {
            store,
            prefix,
            url: text.trim_end_matches('/').to_string(),
            store_url,
        })
    }

    /// The object `name` (a `/`-separated relative path) under the prefix.
    pub fn child(&self, name: &str) -> ObjectPath {
        let mut path = self.prefix.clone();
        for part in name.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        path
    }

    /// The URL of `name` under the prefix, for messages and the `file` column.
    pub fn url_of(&self, name: &str) -> String {
        format!("{}/{name}", self.url)
    }
}

/// Gives each `--storage-option` to `builder` through `set`, refusing a key the client does not
/// know (the builders themselves ignore those).
fn configured<B, K: std::str::FromStr>(
    mut builder: B,
    options: &StorageOptions,
    set: fn(B, K, String) -> B,
    unknown: impl Fn(&str) -> Error,
) -> Result<B> {
    for (key, value) in options {
        let parsed = key.to_ascii_lowercase().parse().map_err(|_| unknown(key))?;
        builder = set(builder, parsed, value.clone());
    }
    Ok(builder)
}

/// How requests are retried: with backoff (growing by about 3x from 250 ms to 10 s, with
/// jitter), up to 20 times within 5 minutes (`DFSTREAM_RETRY_SECONDS` in tests), so that an
/// endpoint that goes away for a while costs time, not the job. (`object_store`'s default
/// gave up on a refused connection within about 2 s.)
fn retry() -> object_store::RetryConfig {
    let timeout = std::env::var("DFSTREAM_RETRY_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: std::time::Duration::from_millis(250),
            max_backoff: std::time::Duration::from_secs(10),
            base: 3.0,
        },
        max_retries: 20,
        retry_timeout: std::time::Duration::from_secs(timeout),
    }
}

/// `text` with every `--storage-option` value blanked out (an error from a builder may quote
/// what it was given).
pub fn without_secrets(text: &str, options: &StorageOptions) -> String {
    let mut text = text.to_string();
    for (_, value) in options {
        if value.len() >= 4 {
            text = text.replace(value.as_str(), "***");
        }
    }
    for name in SECRET_VARIABLES {
        if let Ok(value) = std::env::var(name)
            && value.len() >= 4
        {
            text = text.replace(value.as_str(), "***");
        }
    }
    text
}

/// Environment variables the builders read that hold secrets.
const SECRET_VARIABLES: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_TOKEN",
    "AZURE_CLIENT_SECRET",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
];

/// An `object_store` error as an I/O error (what the callers' contexts wrap), secrets removed.
pub fn io_error(e: object_store::Error) -> std::io::Error {
    let kind = match &e {
        object_store::Error::NotFound { .. } => std::io::ErrorKind::NotFound,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            std::io::ErrorKind::AlreadyExists
        }
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => std::io::ErrorKind::PermissionDenied,
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(
        kind,
        without_secrets(&summarize(&e.to_string()), &Vec::new()),
    )
}

/// An error text with an S3-style XML error body cut down to its code and message, and what
/// the common codes mean.
fn summarize(text: &str) -> String {
    let Some(start) = text.find("<?xml").or_else(|| text.find("<Error>")) else {
        return text.to_string();
    };
    let field = |name: &str| {
        let open = format!("<{name}>");
        let from = text.find(&open)? + open.len();
        let to = text[from..].find('<')? + from;
        Some(text[from..to].to_string())
    };
    let code = field("Code").unwrap_or_default();
    let hint = match code.as_str() {
        "NoSuchBucket" => " (the bucket does not exist: create it, or check the URL)",
        "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied" => {
            " (the credentials were rejected: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        }
        "SlowDown" | "ServiceUnavailable" => " (the server is throttling; retried with backoff)",
        _ => "",
    };
    format!(
        "{} {code}: {}{hint}",
        text[..start].trim_end(),
        field("Message").unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_are_told_apart() {
        assert!(is_url("s3://bucket/prefix/"));
        assert!(is_url("file:///tmp/x"));
        assert!(!is_url("input"));
        assert!(!is_url("/tmp/a://b"));
        match Location::parse("file:///tmp/x", "--input", &Vec::new()).unwrap() {
            Location::Local(path) => assert_eq!(path, PathBuf::from("/tmp/x")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn s3_error_bodies_are_cut_to_code_and_message() {
        let text = "Error performing GET http://x/b - 404 Not Found: <?xml version=\"1.0\"?>\n\
                    <Error><Code>NoSuchBucket</Code><Message>The specified bucket does not \
                    exist</Message><RequestId>abc</RequestId></Error>";
        let short = summarize(text);
        assert!(
            short.contains("NoSuchBucket: The specified bucket"),
            "{short}"
        );
        assert!(short.contains("the bucket does not exist"), "{short}");
        assert!(!short.contains("RequestId"), "{short}");
        assert_eq!(summarize("plain"), "plain");
    }

    #[test]
    fn unknown_storage_options_and_passwords_are_refused() {
        let options = vec![("no_such_key".to_string(), "v".to_string())];
        let err = Location::parse("s3://bucket/p", "--input", &options)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no_such_key"), "{err}");
        let err = Location::parse("s3://user:hunter22@bucket/p", "--input", &Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("hunter22") && err.contains("password"),
            "{err}"
        );
    }
}
