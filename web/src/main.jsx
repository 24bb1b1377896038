// The cloudtuner web UI: the shell (header, navigation, theme, sign-in) and the screens.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "uplot/dist/uPlot.min.css";
import "./styles.css";
import { prefetch, setUnauthorizedHandler } from "./api.js";
import { ErrorNote, Loading } from "./components.jsx";
import { closeFeed, onFeedState } from "./events.js";
import { navigate, useRoute } from "./router.js";
import { JobList } from "./screens/jobs.jsx";
import { LoginScreen } from "./screens/login.jsx";
import { can, loadSession, logout, session } from "./session.js";

// Screens other than the job list load on first use (and in idle time after the first page).
function lazyScreen(load, name) {
  let loaded = null;
  const fetchModule = () => load().then((module) => (loaded = module[name]));
  function Lazy(props) {
    const [Screen, setScreen] = useState(() => loaded);
    useEffect(() => {
      if (!loaded) fetchModule().then((component) => setScreen(() => component));
    }, []);
    return Screen ? <Screen {...props} /> : <Loading />;
  }
  Lazy.preload = fetchModule;
  return Lazy;
}
const JobDetail = lazyScreen(() => import("./screens/job-detail.jsx"), "JobDetail");
const TrainScreen = lazyScreen(() => import("./screens/train.jsx"), "TrainScreen");
const SettingsScreen = lazyScreen(() => import("./screens/settings.jsx"), "SettingsScreen");
const MetricsScreen = lazyScreen(() => import("./screens/metrics.jsx"), "MetricsScreen");

function preloadScreens() {
  // Well after the first screen has drawn, so compiling them never delays it.
  const idle = window.requestIdleCallback || ((fn) => setTimeout(fn, 0));
  setTimeout(() => idle(() => [JobDetail, TrainScreen, SettingsScreen, MetricsScreen].forEach((s) => s.preload())), 3000);
}

const THEMES = ["system", "light", "dark"];

const THEME_KEY = "cloudtuner-theme";
const systemDark = window.matchMedia("(prefers-color-scheme: dark)");

function chosenTheme() {
  try {
    const theme = localStorage.getItem(THEME_KEY);
    return THEMES.includes(theme) ? theme : "system";
  } catch {
    return "system"; // storage blocked
  }
}

// The stylesheet has one palette per value of html[data-theme]: always "light" or "dark" here.
function applyTheme(theme) {
  const dark = theme === "dark" || (theme === "system" && systemDark.matches);
  document.documentElement.setAttribute("data-theme", dark ? "dark" : "light");
}
applyTheme(chosenTheme());
systemDark.addEventListener("change", () => applyTheme(chosenTheme()));

function ThemeToggle() {
  const [theme, setTheme] = useState(chosenTheme);
  useEffect(() => {
    applyTheme(theme);
    try {
      localStorage.setItem(THEME_KEY, theme);
    } catch {
      // Not remembered; it still applies to this page.
    }
  }, [theme]);
  const next = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
  const icon = theme === "dark" ? "☾" : theme === "light" ? "☀" : "◐";
  return (
    <button
      type="button"
      class="icon-button theme-toggle"
      onClick={() => setTheme(next)}
      aria-label={`Colour theme: ${theme}. Switch to ${next}.`}
      title={`Theme: ${theme} (switch to ${next})`}
    >
      <span aria-hidden="true">{icon}</span>
    </button>
  );
}

function FeedIndicator() {
  const [state, setState] = useState("idle");
  useEffect(() => onFeedState(setState), []);
  const label = {
    live: "Live",
    connecting: "Connecting",
    retrying: "Reconnecting",
    unavailable: "Refreshing every few seconds",
    idle: "",
  }[state];
  if (!label) return null;
  return (
    <span class={`feed feed-${state}`} role="status" title="Live updates from the server">
      <span class="feed-dot" aria-hidden="true" />
      {label}
    </span>
  );
}

const NAV = [
  { path: "/", label: "Cloud", match: (p) => p === "/" || p.startsWith("/jobs") },
  { path: "/train", label: "Train in Cloud", match: (p) => p.startsWith("/train"), needs: ["job.submit"] },
  { path: "/metrics", label: "Metrics", match: (p) => p.startsWith("/metrics"), needs: ["metrics.view", "job.view.all", "job.view.own"] },
  { path: "/settings", label: "Settings", match: (p) => p.startsWith("/settings"), icon: "⚙" },
];

function Header({ route, onSignOut }) {
  return (
    <header class="topbar">
      <a class="skip-link" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>
        Skip to content
      </a>
      <a class="brand" href="#/" aria-label="cloudtuner, job list">
        <span class="brand-mark" aria-hidden="true">☁</span> cloudtuner
      </a>
      <nav aria-label="Main">
        <ul class="nav">
          {NAV.filter((item) => !item.needs || can(...item.needs)).map((item) => (
            <li>
              <a
                href={`#${item.path}`}
                class={`nav-link ${item.match(route.path) ? "nav-current" : ""}`}
                aria-current={item.match(route.path) ? "page" : undefined}
              >
                {item.icon ? <span aria-hidden="true">{item.icon} </span> : null}
                {item.label}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <div class="topbar-end">
        <FeedIndicator />
        <ThemeToggle />
        {session.mode === "multi" && session.user ? (
          <span class="user">
            <span class="user-name" title={session.user.role ? `Role: ${session.user.role}` : undefined}>
              {session.user.username || session.user.name || session.user.id}
            </span>
            <button type="button" class="button button-small" onClick={onSignOut}>
              Sign out
            </button>
          </span>
        ) : null}
      </div>
    </header>
  );
}

function Screen({ route }) {
  const [first, second] = route.parts;
  if (!first) return <JobList route={route} />;
  if (first === "jobs" && second) return <JobDetail jobId={decodeURIComponent(second)} route={route} />;
  if (first === "jobs") return <JobList route={route} />;
  if (first === "train") return <TrainScreen route={route} />;
  if (first === "settings") return <SettingsScreen route={route} />;
  if (first === "metrics") return <MetricsScreen />;
  return (
    <div class="page">
      <h1>Page not found</h1>
      <p>
        <a href="#/">Back to the job list</a>
      </p>
    </div>
  );
}

function App() {
  const route = useRoute();
  const [phase, setPhase] = useState("loading"); // loading | ok | login | error
  const [error, setError] = useState(null);
  const [, setVersion] = useState(0);

  const start = async () => {
    try {
      const phase = await loadSession();
      performance.mark("cloudtuner:session");
      setPhase(phase);
      setVersion((v) => v + 1);
    } catch (e) {
      setError(e);
      setPhase("error");
    }
  };
  useEffect(() => {
    setUnauthorizedHandler(() => {
      closeFeed();
      session.user = null;
      setPhase("login");
    });
    start();
  }, []);

  useEffect(() => {
    // Move focus to the page's heading after navigation, for keyboard and screen-reader users.
    const main = document.getElementById("main");
    if (main && phase === "ok") {
      const heading = main.querySelector("h1");
      if (heading) {
        heading.setAttribute("tabindex", "-1");
        heading.focus({ preventScroll: true });
      }
    }
  }, [route.path, phase]);

  useEffect(() => {
    if (phase === "ok") preloadScreens();
  }, [phase]);

  if (phase === "loading") return <main class="page"><Loading label="Loading cloudtuner…" /></main>;
  if (phase === "error")
    return (
      <main class="page">
        <ErrorNote error={error}>cloudtuner cannot start</ErrorNote>
        <button type="button" class="button" onClick={start}>Try again</button>
      </main>
    );
  if (phase === "login") return <LoginScreen onSignedIn={() => { setPhase("ok"); setVersion((v) => v + 1); }} />;
  const signOut = async () => {
    await logout();
    closeFeed();
    session.user = null;
    setPhase("login");
    navigate("/");
  };
  return (
    <>
      <Header route={route} onSignOut={signOut} />
      <main id="main" tabIndex={-1} class="page">
        <Screen route={route} />
      </main>
    </>
  );
}

// The job list is the first screen of most visits: ask for its first page while the session loads.
if (/^#?\/?$/.test(location.hash)) {
  prefetch("/api/cloud/jobs?limit=50");
  prefetch("/api/health");
}

performance.mark("cloudtuner:script");
const root = document.getElementById("app");
root.textContent = "";
render(<App />, root);
