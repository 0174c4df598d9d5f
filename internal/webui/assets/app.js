// securefsd browser client: upload with a progress bar (XMLHttpRequest
// upload progress) and drag and drop. Everything else works without this
// file; the plain upload form posts the same multipart body.
'use strict';
(function () {
  function fmtSize(n) {
    if (n < 1024) return n + ' B';
    var u = 'KMGTPE', i = -1;
    do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
    return (n < 10 ? n.toFixed(1) : n.toFixed(0)) + ' ' + u[i] + 'iB';
  }

  function setup() {
    var form = document.getElementById('upload-form');
    if (!form || !window.FormData || !window.XMLHttpRequest) return;
    var input = document.getElementById('upload-input');
    var bar = document.getElementById('upload-progress');
    var status = document.getElementById('upload-status');
    var button = document.getElementById('upload-submit');
    var busy = false;

    function send(files) {
      if (busy || !files || files.length === 0) return;
      busy = true;
      button.disabled = true;
      var data = new FormData();
      // The token goes first: the server reads parts in order and checks it
      // before it stores any file. It is also sent as a header.
      var csrf = form.querySelector('input[name=csrf]').value;
      data.append('csrf', csrf);
      var ow = document.getElementById('upload-overwrite');
      if (ow && ow.checked) data.append('overwrite', '1');
      var total = 0;
      for (var i = 0; i < files.length; i++) {
        if (files[i].lastModified) data.append('mtime', String(files[i].lastModified));
        data.append('file', files[i], files[i].name);
        total += files[i].size;
      }
      var xhr = new XMLHttpRequest();
      xhr.open('POST', form.action);
      xhr.setRequestHeader('X-CSRF-Token', csrf);
      xhr.setRequestHeader('Accept', 'application/json');
      bar.hidden = false;
      bar.value = 0;
      status.textContent = 'Uploading ' + files.length + (files.length === 1 ? ' file' : ' files') + ' (' + fmtSize(total) + ')…';
      xhr.upload.addEventListener('progress', function (e) {
        if (!e.lengthComputable) return;
        var pct = Math.floor(100 * e.loaded / e.total);
        bar.value = pct;
        status.textContent = pct + '% of ' + fmtSize(e.total);
      });
      xhr.addEventListener('load', function () {
        var res = null;
        try { res = JSON.parse(xhr.responseText); } catch (err) { res = null; }
        if (xhr.status >= 200 && xhr.status < 300) {
          bar.value = 100;
          status.textContent = 'Done.';
          window.location.assign(form.getAttribute('data-list') || window.location.href);
          return;
        }
        fail((res && res.error) || ('Upload failed (' + xhr.status + ').'));
      });
      xhr.addEventListener('error', function () { fail('Upload failed: the connection was lost.'); });
      xhr.addEventListener('abort', function () { fail('Upload cancelled.'); });
      xhr.send(data);
    }

    function fail(msg) {
      busy = false;
      button.disabled = false;
      bar.hidden = true;
      status.textContent = msg;
      status.className = 'status error';
    }

    form.addEventListener('submit', function (e) {
      e.preventDefault();
      send(input.files);
    });

    var zone = document.querySelector('main');
    zone.addEventListener('dragover', function (e) {
      if (e.dataTransfer && Array.prototype.indexOf.call(e.dataTransfer.types, 'Files') >= 0) {
        e.preventDefault();
        zone.classList.add('dragover');
      }
    });
    zone.addEventListener('dragleave', function () { zone.classList.remove('dragover'); });
    zone.addEventListener('drop', function (e) {
      zone.classList.remove('dragover');
      if (e.dataTransfer && e.dataTransfer.files.length) {
        e.preventDefault();
        send(e.dataTransfer.files);
      }
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', setup);
  else setup();
})();
