server {
	listen 127.0.0.1:8080;
	server_name push.example.com;

	location ~* ^/ws/(\d+)$ {
		websocket 30s 1m welcome=off push_listen=127.0.0.1:9000 push_host=push.example.com,10.0.0.1;
	}
}
