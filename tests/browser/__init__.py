"""Browser tests of the control plane: headless Debian chromium driven by Playwright."""
