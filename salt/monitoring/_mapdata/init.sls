{#- Shows this formula's merged settings (parameters, OS map, pillar) as the formula
    sees them, secrets masked; changes nothing and writes no file:
        salt <minion> state.apply <formula>._mapdata #}
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata with context %}
{{ (tplroot ~ "-mapdata") | json }}:
  test.show_notification:
    - text: {{ salt["opskit.mapdata"](tplroot, mapdata) | json }}
