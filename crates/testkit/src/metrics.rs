//! Prometheus samples, read with `prometheus-parse`.

use std::collections::HashMap;

use prometheus_parse::{Sample, Scrape, Value};

/// A Prometheus text exposition.
#[derive(Debug)]
pub struct Metrics(pub String);

impl Metrics {
    /// The value of the sample whose name and labels are exactly `series`
    /// (`name` or `name{label="value",...}`, as printed).
    pub fn value(&self, series: &str) -> Option<f64> {
        let wanted = series_of(&format!("{series} 0")).pop()?;
        series_of(&self.0)
            .into_iter()
            .find(|s| s.name == wanted.name && s.labels == wanted.labels)
            .map(|s| s.value)
    }

    pub fn get(&self, series: &str) -> f64 {
        self.value(series)
            .unwrap_or_else(|| panic!("no sample {series} in:\n{}", self.0))
    }

    /// The sum of every series of metric `name`, whatever its labels.
    pub fn sum(&self, name: &str) -> f64 {
        series_of(&self.0)
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }

    /// How many series (sample lines) the exposition has.
    pub fn series_count(&self) -> usize {
        series_of(&self.0).len()
    }
}

/// One sample line: the series' name and labels, and its value.
struct Series {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Every sample line of `text`. The parser groups a histogram's buckets (and
/// a summary's quantiles) into one sample; they are split back into the
/// series they were printed as.
fn series_of(text: &str) -> Vec<Series> {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("lines of a string read without error");
    scrape.samples.into_iter().flat_map(split).collect()
}

fn split(sample: Sample) -> Vec<Series> {
    let labels: HashMap<String, String> = sample
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), canonical(k, v)))
        .collect();
    let one = |suffix: &str, label: &str, bound: f64, value: f64| {
        let mut labels = labels.clone();
        labels.insert(label.to_owned(), bound_text(bound));
        Series {
            name: format!("{}{suffix}", sample.metric),
            labels,
            value,
        }
    };
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => vec![Series {
            name: sample.metric.clone(),
            labels: labels.clone(),
            value: *v,
        }],
        Value::Histogram(buckets) => buckets
            .iter()
            .map(|b| one("_bucket", "le", b.less_than, b.count))
            .collect(),
        Value::Summary(quantiles) => quantiles
            .iter()
            .map(|q| one("", "quantile", q.quantile, q.count))
            .collect(),
    }
}

/// A label's value, with bounds (`le`, `quantile`) as numbers read, so that
/// `+Inf` and `1.0` match however they were printed.
fn canonical(label: &str, value: &str) -> String {
    match (label, value.to_ascii_lowercase().parse::<f64>()) {
        ("le" | "quantile", Ok(bound)) => bound_text(bound),
        _ => value.to_owned(),
    }
}

fn bound_text(bound: f64) -> String {
    if bound == f64::INFINITY {
        "+Inf".to_owned()
    } else {
        bound.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_series() {
        let text = Metrics(
            "# HELP a x\n# TYPE a gauge\nhttp_server_active_requests 100\n\
            http_server_request_duration_seconds_count{code=\"200\",method=\"GET\"} 1000000\n\
            http_server_request_duration_seconds_count{code=\"404\",method=\"GET\"} 3\n\
            http_server_request_duration_seconds_count_other 7\n"
                .into(),
        );
        assert_eq!(text.value("http_server_active_requests"), Some(100.0));
        assert_eq!(text.value("http_server_active"), None);
        assert_eq!(
            text.value("http_server_request_duration_seconds_count{code=\"404\",method=\"GET\"}"),
            Some(3.0)
        );
        assert_eq!(
            text.sum("http_server_request_duration_seconds_count"),
            1_000_003.0
        );
        assert_eq!(text.series_count(), 4);
    }

    #[test]
    fn reads_unlabelled_samples() {
        let text = Metrics(
            "# HELP x\nlameduck_shutdown_phase 2\nlameduck_shutdown_duration_seconds 0.75\n".into(),
        );
        assert_eq!(text.value("lameduck_shutdown_phase"), Some(2.0));
        assert_eq!(text.value("lameduck_shutdown_duration_seconds"), Some(0.75));
        assert_eq!(text.value("missing"), None);
    }

    #[test]
    fn reads_histogram_buckets_as_printed() {
        let text = Metrics(
            "# HELP d x\n# TYPE d histogram\n\
            d_bucket{code=\"200\",le=\"0.005\"} 1\nd_bucket{code=\"200\",le=\"1\"} 2\n\
            d_bucket{code=\"200\",le=\"+Inf\"} 3\nd_sum{code=\"200\"} 0.5\nd_count{code=\"200\"} 3\n"
                .into(),
        );
        assert_eq!(text.value("d_bucket{code=\"200\",le=\"0.005\"}"), Some(1.0));
        assert_eq!(text.value("d_bucket{le=\"1.0\",code=\"200\"}"), Some(2.0));
        assert_eq!(text.value("d_bucket{code=\"200\",le=\"+Inf\"}"), Some(3.0));
        assert_eq!(text.value("d_bucket{code=\"200\"}"), None);
        assert_eq!(text.value("d_count{code=\"200\"}"), Some(3.0));
        assert_eq!(text.series_count(), 5);
    }
}
