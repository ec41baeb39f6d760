// Apply a saved theme before the first paint (no flash of the other theme). A file, not an
// inline script, so that a strict Content-Security-Policy (script-src 'self') allows it.
try {
  const theme = localStorage.getItem("gan.theme");
  if (theme === "dark" || theme === "light") document.documentElement.dataset.theme = theme;
} catch (e) {
  // storage disabled: follow the system's preference
}
