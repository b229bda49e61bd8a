//! Prometheus' query API, whatever carries it: loopback HTTP for the local
//! backend, the API server's Service proxy for a cluster.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// One series of an instant query: its labels and value.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))] // the cluster's proxy counts
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One series of a range selector: its labels and raw samples (Unix seconds, value).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

/// The path of an instant query, evaluated now or at `at` (Unix seconds).
pub fn query_path(promql: &str, at: Option<f64>) -> String {
    let mut path = format!("/api/v1/query?query={}", encode(promql));
    if let Some(at) = at {
        path += &format!("&time={at:.3}");
    }
    path
}

/// The samples of an instant query whose result is a vector.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))] // the cluster's proxy counts
pub fn vector(promql: &str, body: &[u8]) -> Result<Vec<Sample>> {
    let result: Vec<VectorItem> = result(promql, body, "vector")?;
    result
        .into_iter()
        .map(|r| {
            Ok(Sample {
                labels: r.metric,
                value: r.value.1.parse().context("sample value")?,
            })
        })
        .collect()
}

/// The series of an instant query of a range selector (`metric[5m]`): the
/// raw samples, with the times they were scraped.
pub fn matrix(promql: &str, body: &[u8]) -> Result<Vec<Series>> {
    let result: Vec<MatrixItem> = result(promql, body, "matrix")?;
    result
        .into_iter()
        .map(|r| {
            let points = r
                .values
                .into_iter()
                .map(|(t, v)| Ok((t, v.parse().context("sample value")?)))
                .collect::<Result<_>>()?;
            Ok(Series {
                labels: r.metric,
                points,
            })
        })
        .collect()
}

fn result<T: serde::de::DeserializeOwned>(promql: &str, body: &[u8], kind: &str) -> Result<T> {
    let answer: Answer = serde_json::from_slice(body).with_context(|| {
        format!(
            "query {promql:?}: not a Prometheus answer: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })?;
    if answer.status != "success" {
        bail!(
            "query {promql:?} failed: {}",
            answer.error.unwrap_or_default()
        );
    }
    let data = answer.data.context("no data")?;
    if data.result_type != kind {
        bail!(
            "query {promql:?}: a {} where a {kind} was expected",
            data.result_type
        );
    }
    Ok(serde_json::from_value(data.result)?)
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    error: Option<String>,
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[cfg_attr(not(feature = "cluster"), allow(dead_code))] // the cluster's proxy counts
#[derive(Deserialize)]
struct VectorItem {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

#[derive(Deserialize)]
struct MatrixItem {
    metric: BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

/// Percent-encodes a query parameter.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_promql() {
        assert_eq!(
            encode(r#"max(x{replica="a b"}[5m])"#),
            "max%28x%7Breplica%3D%22a%20b%22%7D%5B5m%5D%29"
        );
        assert_eq!(
            query_path("up", Some(12.5)),
            "/api/v1/query?query=up&time=12.500"
        );
    }

    #[test]
    fn parses_a_matrix_answer_and_refuses_the_wrong_kind() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"pod":"p"},"values":[[1700000000.1,"0"],[1700000002.1,"1"]]}]}}"#;
        let series = matrix("x[5s]", body).unwrap();
        assert_eq!(
            series[0].points,
            [(1_700_000_000.1, 0.0), (1_700_000_002.1, 1.0)]
        );
        let instant = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"pod":"p"},"value":[1700000000.1,"2.5"]}]}}"#;
        assert!(matrix("x", instant).is_err());
        assert_eq!(vector("x", instant).unwrap()[0].value, 2.5);
        assert!(vector("x[5s]", body).is_err());
        let failed = br#"{"status":"error","error":"parse error"}"#;
        assert!(
            matrix("x[5s]", failed)
                .unwrap_err()
                .to_string()
                .contains("parse error")
        );
    }
}
