// loomiq dashboard: streams a task's text into #live as its agents write it (Server-Sent Events).
(function () {
  "use strict";
  function stream(el) {
    var url = el.getAttribute("data-stream");
    if (!url || !window.EventSource) return;
    var steps = {};
    var source = new EventSource(url);
    function block(step, agent) {
      var key = step + "|" + agent;
      if (!steps[key]) {
        var wrap = document.createElement("div");
        wrap.className = "step";
        var h = document.createElement("h3");
        h.textContent = step + " · " + agent;
        var pre = document.createElement("pre");
        pre.setAttribute("data-step", step);
        wrap.appendChild(h);
        wrap.appendChild(pre);
        el.appendChild(wrap);
        steps[key] = pre;
      }
      return steps[key];
    }
    source.addEventListener("text_delta", function (e) {
      var d = JSON.parse(e.data);
      block(d.step, d.agent).textContent += d.text;
    });
    source.addEventListener("step_started", function (e) {
      var d = JSON.parse(e.data);
      block(d.step, d.agent);
    });
    source.addEventListener("task_finished", function () {
      source.close();
      el.setAttribute("data-finished", "1");
      if (window.htmx) {
        var detail = document.getElementById("task-detail");
        if (detail) window.htmx.ajax("GET", detail.getAttribute("hx-get") || location.pathname.replace("/ui/tasks/", "/ui/fragments/tasks/"), {target: "#task-detail", swap: "innerHTML"});
      }
    });
    source.onerror = function () {
      if (el.getAttribute("data-finished")) source.close();
    };
  }
  document.addEventListener("DOMContentLoaded", function () {
    var live = document.getElementById("live");
    if (live) stream(live);
  });
})();
