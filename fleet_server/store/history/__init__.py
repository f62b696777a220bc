"""Device history: samples and their tiers (:mod:`.samples`), rollups (:mod:`.rollups`), retention
(:mod:`.retention`), availability (:mod:`.availability`) and the API's history queries (:mod:`.queries`)."""
