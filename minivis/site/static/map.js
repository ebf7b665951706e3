// The interactive t-SNE map: points from the inline JSON (#map-data) drawn as SVG circles; hovering or
// clicking a point shows its image (a tile of the atlas PNG, as a CSS background) and its label.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("map-data").textContent);
  var svg = document.getElementById("map-svg");
  var preview = document.getElementById("map-preview");
  var label = document.getElementById("map-label");
  var legend = document.getElementById("map-legend");
  var colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];
  var NS = "http://www.w3.org/2000/svg";
  var zoom = 4;  // the tile is drawn 4x larger, pixel by pixel
  var picked = null;
  data.classes.forEach(function (name, k) {
    var item = document.createElement("li");
    var dot = document.createElement("span");
    dot.style.background = colours[k % colours.length];
    item.appendChild(dot);
    item.appendChild(document.createTextNode(name));
    legend.appendChild(item);
  });
  var radius = data.x.length > 4000 ? 3 : 5;
  for (var i = 0; i < data.x.length; i++) {
    var c = document.createElementNS(NS, "circle");
    c.setAttribute("cx", (data.x[i] * 1000).toFixed(1));
    c.setAttribute("cy", (data.y[i] * 1000).toFixed(1));
    c.setAttribute("r", radius);
    c.setAttribute("fill", colours[data.label[i] % colours.length]);
    c.setAttribute("data-i", i);
    svg.appendChild(c);
  }
  function show(i) {
    var col = i % data.cols, row = Math.floor(i / data.cols), t = data.tile * zoom;
    preview.hidden = false;
    preview.style.width = t + "px";
    preview.style.height = t + "px";
    preview.style.backgroundImage = "url('" + data.atlas + "')";
    preview.style.backgroundSize = (data.cols * t) + "px auto";
    preview.style.backgroundPosition = (-col * t) + "px " + (-row * t) + "px";
    preview.setAttribute("data-i", i);
    label.textContent = "#" + i + ": " + data.classes[data.label[i]];
  }
  function target(event) {
    var el = event.target;
    return el && el.tagName && el.tagName.toLowerCase() === "circle" ? el : null;
  }
  svg.addEventListener("mouseover", function (event) {
    var el = target(event);
    if (el) { show(+el.getAttribute("data-i")); }
  });
  svg.addEventListener("click", function (event) {
    var el = target(event);
    if (!el) { return; }
    if (picked) { picked.classList.remove("picked"); }
    picked = el;
    el.classList.add("picked");
    show(+el.getAttribute("data-i"));
  });
})();
