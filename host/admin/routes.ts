/**
 * What the admin listener serves (server.ts decides who may call it): one line per route.
 * The admin API (sessions, kill, stats, blacklist) and the dashboard go here too.
 */
import type { Metrics } from '../metrics.js';
import { apiRoutes, type AdminApiDeps } from './api.js';
import { DASHBOARD_HTML } from './dashboard.js';
import type { Routes } from './server.js';

export interface AdminDeps extends AdminApiDeps {
  metrics: Metrics;
}

export function adminRoutes(d: AdminDeps): Routes {
  return {
    /** Prometheus text format (prom-client's content type); open to a scraper on a loopback listener. */
    'GET /metrics': { access: 'scrape', handle: async () => ({ status: 200, ...(await d.metrics.exposition()) }) },
    /** The dashboard (dashboard.ts): a static page; the data comes from the API below. */
    'GET /': { access: 'page', handle: async () => ({ status: 200, contentType: 'text/html; charset=utf-8', body: DASHBOARD_HTML }) },
    ...apiRoutes(d),
  };
}
