// The web UI's only script of its own (the pages allow scripts from
// /static/ only). A button with data-copy="<selector>" copies that
// element's text; one with data-reveal="<selector>" shows or masks that
// password field.
document.addEventListener('click', (event) => {
  const button = event.target.closest('[data-copy]');
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(() => {
    button.textContent = 'Copied';
  });
});

document.addEventListener('click', (event) => {
  const button = event.target.closest('[data-reveal]');
  if (!button) return;
  const field = document.querySelector(button.dataset.reveal);
  if (!field) return;
  const shown = field.type === 'text';
  field.type = shown ? 'password' : 'text';
  button.textContent = shown ? 'Show password' : 'Hide password';
});
