"""Unit tests of the dashboard drawing that need no cluster and no
matplotlib: which panels, the queries Grafana would send, the table's rows."""
import json
import unittest

import dashboard
from errors import Fail


class Queries(unittest.TestCase):
    def setUp(self):
        self.board = json.loads(dashboard.DASHBOARD.read_text())

    def test_the_shutdowns_row_has_its_panels(self):
        titles = [p["title"] for p in dashboard.row_panels(self.board)]
        self.assertEqual(titles, ["Shutdowns per rollout, by outcome", "Each pod's shutdown",
                                  "Final shutdown duration per pod"])
        with self.assertRaises(Fail):
            dashboard.row_panels(self.board, "no such row")

    def test_every_query_of_the_row_is_filled_in(self):
        for panel in dashboard.row_panels(self.board):
            for target in panel["targets"]:
                expr = dashboard.expand(target["expr"], "scrape-30s", 300)
                self.assertNotIn("$namespace", expr)
                self.assertIn('namespace=~"scrape-30s"', expr)
        self.assertIn("[300s]", dashboard.expand("x[$__range]", "ns", 300))
        with self.assertRaises(Fail):
            dashboard.expand("x{a=\"$unknown\"}", "ns", 300)
        with self.assertRaises(Fail):
            dashboard.expand("x", 'a"b', 300)

    def test_a_fetch_asks_instant_and_range_queries_as_grafana_does(self):
        asked = []

        def get(path):
            asked.append(path)
            return {"status": "success", "data": {"result": []}}

        panels = dashboard.row_panels(self.board)
        fetched = dashboard.fetch(get, panels, "ns", 1000.0, 1300.0)
        self.assertEqual(len(fetched), 3)
        self.assertTrue(any("/api/v1/query_range?" in p for p in asked))
        self.assertTrue(any("/api/v1/query?" in p and "time=1300.0" in p for p in asked))

        def refused(path):
            return {"status": "error", "error": "parse error"}

        with self.assertRaises(Fail):
            dashboard.fetch(refused, panels, "ns", 1000.0, 1300.0)

    def test_a_table_merges_its_queries_by_pod(self):
        def result(*pairs):
            return ({}, [{"metric": {"rollout": "r", "pod": p}, "value": [0, str(v)]} for p, v in pairs])

        rows = dashboard.table_rows([result(("a", 5), ("b", 6)), result(("b", 0.7))])
        self.assertEqual(rows, [("r", "a", 5.0, None), ("r", "b", 6.0, 0.7)])

    def test_legends_follow_grafana_s_format(self):
        self.assertEqual(dashboard.legend("{{rollout}} {{outcome}}", {"rollout": "x", "outcome": "clean"}),
                         "x clean")
        self.assertEqual(dashboard.legend("", {"pod": "p"}), "pod=p")


if __name__ == "__main__":
    unittest.main()
